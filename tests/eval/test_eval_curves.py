"""Curves from verl's own file logger output and from a flat per-step JSONL."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from uec_recipe.eval import curves


@pytest.fixture
def verl_log(tmp_path, monkeypatch):
    """Written by verl's FileLogger itself, so the reader is tested against the real format."""
    from verl.utils.tracking import FileLogger

    path = tmp_path / "grpo.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    logger = FileLogger("project", "grpo")
    # verl logs the pre-training validation on its own line at step 0, then one line per step.
    logger.log({"val-core/uec_demo/digit_sum/acc/mean@1": 0.1}, step=0)
    for step in range(1, 6):
        logger.log(
            {
                "entropy/regular_rollout": np.float32(1.0 / step),
                "response_length/mean": 10.0 + step,
                "critic/score/mean": np.float64(0.1 * step),
                "timing_s/step": 1.0,
                "actor/pg_loss": float("nan"),  # orjson writes null
            },
            step=step,
        )
    logger.log({"val-core/uec_demo/digit_sum/acc/mean@1": 0.5}, step=5)
    logger.finish()
    return path


@pytest.fixture
def flat_log(tmp_path):
    path = tmp_path / "uec.jsonl"
    lines = [
        {
            "step": step,
            "entropy/regular_rollout": 1.5 / step,
            "critic/score/mean": 0.15 * step,
            "uec/difficult_prompts": 10 - step,
            "uec/replay_buffer_size": step * 2,
            "note": "text is ignored",
        }
        for step in range(1, 6)
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_reads_verl_file_logger_format(verl_log):
    series = curves.read_metrics(verl_log)
    assert series["entropy/regular_rollout"][0] == (1, 1.0)
    assert [step for step, _ in series["response_length/mean"]] == [1, 2, 3, 4, 5]
    assert series["val-core/uec_demo/digit_sum/acc/mean@1"] == [(0, 0.1), (5, 0.5)]
    assert "actor/pg_loss" not in series  # NaN -> null -> skipped


def test_reads_flat_format_and_skips_non_numbers(flat_log):
    series = curves.read_metrics(flat_log)
    assert series["uec/difficult_prompts"][-1] == (5, 5.0)
    assert "note" not in series


def test_png_has_expected_size_and_one_line_per_run(verl_log, flat_log, tmp_path):
    runs = {"GRPO": curves.read_metrics(verl_log), "UEC-RL": curves.read_metrics(flat_log)}
    metrics, notes = curves.select_metrics(runs, curves.DEFAULT_METRICS)
    assert metrics == [
        "entropy/regular_rollout",
        "response_length/mean",
        "critic/score/mean",
        "val-core/uec_demo/digit_sum/acc/mean@1",
        "uec/difficult_prompts",
        "uec/replay_buffer_size",
    ]
    assert any("val-passk/*/pass@1" in note for note in notes)  # asked for by default, in no run
    assert any("uec/difficult_prompts: no data in run(s) GRPO" in note for note in notes)

    out = tmp_path / "figs" / "curves.png"
    figure = curves.plot_curves(runs, metrics, out, columns=3, subplot_inches=(4.0, 3.0), dpi=50)
    with Image.open(out) as image:
        assert image.size == (3 * 4.0 * 50, 2 * 3.0 * 50)  # 3 columns x 2 rows of subplots

    axes = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert list(axes) == metrics
    shared = ["entropy/regular_rollout", "critic/score/mean"]
    for metric in shared:
        assert len(axes[metric].get_lines()) == 2
        assert [t.get_text() for t in axes[metric].get_legend().get_texts()] == ["GRPO", "UEC-RL"]
    for metric in ("uec/difficult_prompts", "response_length/mean"):
        assert len(axes[metric].get_lines()) == 1
    entropy = axes["entropy/regular_rollout"].get_lines()[1]
    assert list(entropy.get_xdata()) == [1, 2, 3, 4, 5]
    assert math.isclose(entropy.get_ydata()[0], 1.5)


def test_cli_skips_missing_metrics_with_a_note(verl_log, flat_log, tmp_path, capsys):
    out = tmp_path / "c.png"
    figure = curves.main(
        ["--run", f"GRPO={verl_log}", "--run", f"UEC-RL={flat_log}", "--out", str(out)]
        + ["--metrics", "entropy/regular_rollout", "actor/does_not_exist", "--dpi", "40"]
    )
    assert out.is_file()
    assert "skipped actor/does_not_exist" in capsys.readouterr().err
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 1
    with Image.open(out) as image:
        assert image.size == (int(4.8 * 40), int(3.2 * 40))


def test_errors(verl_log, tmp_path):
    runs = {"GRPO": curves.read_metrics(verl_log)}
    with pytest.raises(ValueError, match="none of the metrics"):
        curves.select_metrics(runs, ["uec/*", "nothing"])
    with pytest.raises(FileNotFoundError):
        curves.read_metrics(tmp_path / "missing.jsonl")
    no_step = tmp_path / "no_step.jsonl"
    no_step.write_text('{"entropy/regular_rollout": 1.0}\n')
    with pytest.raises(ValueError, match="no 'step'"):
        curves.read_metrics(no_step)
    assert curves.parse_run("a=b=c.jsonl") == ("a", curves.Path("b=c.jsonl"))
    assert curves.parse_run("runs/uec.jsonl") == ("uec", curves.Path("runs/uec.jsonl"))
