"""Matched-generation GRPO's n, measured from UEC-RL runs (uec_lab/study/match.py), on hand-made study folders: the
arithmetic, the micro-batch divisors, the file and its validation, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from uec_lab.study import match
from uec_lab.study import run as study
from uec_recipe.main_uec import dry_run_config

OVERRIDES = ["platform=cpu", "task=chain_sum", "setting=study_v2"]  # P = 16, G = 5, mini 16, micro 80 (study_v2)


def study_folder(folder: Path, method: str = "uec", exploration=((60, 70), (80, 78)), extra=()) -> Path:
    """Two finished runs of ``method``: 80 regular samples a step (16 x 5) plus the exploration samples given."""
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"overrides": [*OVERRIDES, *extra], "task": "chains"}))
    for seed, steps in enumerate(exploration, start=1):
        run = folder / "runs" / method / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "done.json").write_text(json.dumps({"steps": len(steps)}))
        rows = [{"step": 0, "data": {"val/score": 0.5}}]  # validation before training: not a step
        rows += [
            {"step": i, "data": {"uec/regular_samples": 80, "uec/exploration_samples": e}}
            for i, e in enumerate(steps, start=1)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_n_is_the_mean_samples_per_step_over_p_and_micro_batches_divide_the_new_mini_batch(tmp_path):
    result = match.matched(study_folder(tmp_path / "study"))
    # seed 1: 80 + 65 = 145 a step; seed 2: 80 + 79 = 159; mean 152 -> n = round(152 / 16) = round(9.5) = 10
    assert result.runs == {1: 145.0, 2: 159.0} and result.steps == 4
    assert (result.task, result.prompts, result.samples, result.mini_batch) == ("chain_sum", 16, 5, 16)
    assert result.n == 10
    # the mini-batch becomes 16 x 10 = 160 rows: the study's micro-batches of 80 rows divide it and stay
    assert set(result.micro_sizes().values()) == {80}
    nine = match.matched(study_folder(tmp_path / "nine", exploration=((64,), (64,))))  # 144 a step -> n = 9
    assert nine.n == 9 and set(nine.micro_sizes().values()) == {72}  # 144 rows: 72 is its largest divisor <= 80


def test_the_file_is_validated_then_written_and_the_preset_runs_on_it(tmp_path):
    folder = study_folder(tmp_path / "study", exploration=((64,), (64,)))
    config_dir = tmp_path / "config"
    assert study.main(["match", "--out", str(folder), "--to", str(config_dir)]) == 0
    written = config_dir / "task_algo" / "chain_sum_grpo_matched.yaml"
    text = written.read_text()
    assert "144.0 ± 0.0 (sd over runs) generated samples per step over 2 run(s) and 2 steps" in text
    assert "n = round(144.0 / 16) = 9" in text
    assert yaml.safe_load(text)["actor_rollout_ref"]["rollout"] == {
        "n": 9, "log_prob_micro_batch_size_per_gpu": 72
    }  # fmt: skip
    search = f"hydra.searchpath=[pkg://verl.trainer.config,file://{config_dir}]"
    config = dry_run_config(["algo=grpo_matched", *OVERRIDES, search])
    assert config.actor_rollout_ref.rollout.n == 9 and config.algorithm.adv_estimator == "grpo"
    assert config.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu == 72 and not config.uec.enable


def test_printing_writes_nothing_and_bad_input_is_refused_by_name(tmp_path, capsys):
    folder = study_folder(tmp_path / "study")
    assert study.main(["match", "--out", str(folder)]) == 0
    assert "rollout:\n    n: 10" in capsys.readouterr().out
    assert not (match.CONFIG_DIR / "task_algo" / "chain_sum_grpo_matched.yaml").exists()
    with pytest.raises(SystemExit, match="no finished uec_release run"):
        match.matched(folder, "uec_release")
    with pytest.raises(SystemExit, match="give a UEC-RL method"):
        match.matched(folder, "grpo")
    with pytest.raises(SystemExit, match="has no study.json"):
        match.matched(tmp_path)
    grpo_like = study_folder(tmp_path / "grpo-like", exploration=((0,),))
    for path in grpo_like.glob("runs/uec/seed*/metrics.jsonl"):
        path.write_text('{"step": 1, "data": {"critic/score/mean": 0.5}}\n')
    with pytest.raises(SystemExit, match="logged no uec/regular_samples"):
        match.matched(grpo_like)


def test_a_matched_configuration_that_does_not_validate_leaves_the_old_file(tmp_path):
    # the study's own override fixes a micro-batch that does not divide the matched mini-batch (16 x 9 = 144 rows)
    folder = study_folder(
        tmp_path / "study",
        exploration=((64,), (64,)),
        extra=["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=80"],
    )
    config_dir = tmp_path / "config"
    (config_dir / "task_algo").mkdir(parents=True)
    old = config_dir / "task_algo" / "chain_sum_grpo_matched.yaml"
    old.write_text("# @package _global_\nactor_rollout_ref:\n  rollout:\n    n: 7\n")
    with pytest.raises(SystemExit, match="does not validate, nothing written"):
        study.main(["match", "--out", str(folder), "--to", str(config_dir)])
    assert old.read_text().endswith("n: 7\n")
