"""The study's bookkeeping without training: run order, reuse of finished runs, the base model's seeds and the
gain over it (the end-to-end study test is tests/e2e/test_study_cpu.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from uec_lab.study import run as study
from uec_lab.study.report import base_eval_dirs, claim_lines, gain_over_base, relative_improvement_note


def test_plan_runs_every_first_seed_before_any_second():
    specs = study.plan(["grpo", "uec", "dapo"], seeds=2, other_seeds=1, steps=5)
    assert [s.name for s in specs] == ["grpo/seed1", "uec/seed1", "dapo/seed1", "grpo/seed2", "uec/seed2"]
    with pytest.raises(ValueError, match="unknown method"):
        study.plan(["gpro"], 1, 1, 5)


def _planned_by_command_line(monkeypatch, tmp_path, *args) -> list:
    """The runs `python -m uec_lab.study run` would start, without starting them."""
    planned = []
    monkeypatch.setattr(study, "run_study", lambda out, specs, *rest, **kw: planned.extend(specs))
    for key in ("MODEL", "TRAIN", "TEST", "REPORT"):
        monkeypatch.setenv(f"DEMO_{key}", str(tmp_path / key.lower()))
    assert study.main(["run", "--out", str(tmp_path / "out"), *args]) == 0
    return planned


def test_the_full_study_runs_the_papers_comparisons_and_the_options_only_on_request(monkeypatch, tmp_path):
    specs = _planned_by_command_line(monkeypatch, tmp_path)
    counts = {m: sum(s.method == m for s in specs) for m in {s.method for s in specs}}
    assert counts == {
        "grpo": 3, "uec": 3, "dapo": 2, "kl_cov": 2, "entropy_adv": 2,
        "uec_no_exploration": 2, "uec_no_replay": 2, "uec_no_retention": 2,
    }  # fmt: skip
    assert {s.steps for s in specs} == {study.DEFAULT_STEPS}
    options = _planned_by_command_line(monkeypatch, tmp_path, "--methods", "uec_plus,uec_adaptive", "--steps", "7")
    assert [s.name for s in options] == ["uec_plus/seed1", "uec_adaptive/seed1", "uec_plus/seed2", "uec_adaptive/seed2"]
    quick = _planned_by_command_line(monkeypatch, tmp_path, "--quick")
    assert [(s.name, s.steps) for s in quick] == [("grpo/seed1", study.QUICK_STEPS), ("uec/seed1", study.QUICK_STEPS)]


def test_a_finished_run_of_another_method_definition_is_refused(tmp_path):
    run = tmp_path / "runs" / "kl_cov" / "seed1"
    run.mkdir(parents=True)
    method = study.METHODS["kl_cov"]
    (run / "done.json").write_text(json.dumps({"preset": method.preset, "overrides": list(method.overrides)}))
    study.check_finished_run(run, study.RunSpec("kl_cov", 1, 5))  # the same definition: reused
    (run / "done.json").write_text(json.dumps({"preset": "kl_cov", "overrides": []}))
    with pytest.raises(SystemExit, match="delete that folder"):
        study.check_finished_run(run, study.RunSpec("kl_cov", 1, 5))


def _finished_base_eval(folder: Path) -> None:
    (folder / "eval" / "L08-medium").mkdir(parents=True)
    (folder / "eval" / "L08-medium" / "summary.json").write_text(json.dumps({"avg@n": 0.25}))
    (folder / "done.json").write_text("{}")


def test_a_single_base_evaluation_from_an_older_study_becomes_seed_one(tmp_path):
    base = tmp_path / "runs" / "base"
    _finished_base_eval(base)
    (base / "eval.log").write_text("log")
    demo = study.Demo(*(tmp_path / n for n in ("model", "train", "test", "eval", "report")))
    assert base_eval_dirs(tmp_path) == [base / "eval"]  # the report reads the old layout as it is
    study.evaluate_base(demo, tmp_path, [], study.EVAL, seeds=[1])  # seed 1 finished: nothing is sampled
    assert base_eval_dirs(tmp_path) == [base / "seed1" / "eval"]
    assert json.loads((base / "seed1" / "eval" / "L08-medium" / "summary.json").read_text()) == {"avg@n": 0.25}
    assert (base / "seed1" / "eval.log").read_text() == "log" and not (base / "eval").exists()


def test_base_seeds_are_read_in_seed_order_and_unfinished_ones_are_ignored(tmp_path):
    base = tmp_path / "runs" / "base"
    for seed in (10, 2, 1):
        _finished_base_eval(base / f"seed{seed}")
    (base / "seed3" / "eval").mkdir(parents=True)  # interrupted: no done.json
    assert base_eval_dirs(tmp_path) == [base / f"seed{k}" / "eval" for k in (1, 2, 10)]
    with pytest.raises(SystemExit, match="no finished base-model evaluation"):
        base_eval_dirs(tmp_path / "elsewhere")


def test_the_gain_over_base_carries_the_base_models_sampling_noise():
    grpo = [0.30, 0.32, 0.31]
    one_base = gain_over_base(grpo, [0.25])
    assert one_base.mean == pytest.approx(0.06)
    several = gain_over_base(grpo, [0.22, 0.25, 0.28])
    assert several.mean == pytest.approx(0.06)
    assert several.half_width > one_base.half_width  # the base model's spread widens the interval


def _finished_levels(folder: Path, accuracy: dict[str, float]) -> Path:
    for benchmark, value in accuracy.items():
        (folder / "eval" / benchmark).mkdir(parents=True)
        (folder / "eval" / benchmark / "summary.json").write_text(json.dumps({"avg@n": value, "pass@k": {"1": value}}))
    (folder / "done.json").write_text("{}")
    return folder


def _finished_run(folder: Path, average: float) -> Path:
    return _finished_levels(folder, {"L08-medium": average})


@pytest.mark.parametrize(
    ("grpo", "left_out"),
    [([0.26, 0.24, 0.27], True), ([0.40, 0.42, 0.41], False), ([0.41], True)],
    ids=["gain-within-noise", "clear-gain", "one-seed-no-interval"],
)
def test_the_relative_improvement_over_grpo_is_left_out_when_grpos_gain_includes_zero(tmp_path, grpo, left_out):
    for seed, value in enumerate((0.24, 0.25, 0.26), start=1):
        _finished_run(tmp_path / "runs" / "base" / f"seed{seed}", value)
    runs = {"grpo": [_finished_run(tmp_path / "runs" / "grpo" / f"seed{k}", v) for k, v in enumerate(grpo, 1)]}
    note = relative_improvement_note(tmp_path, runs, ["L08-medium"])
    assert bool(note) == left_out
    if left_out:
        assert ("no interval" if len(grpo) == 1 else "includes 0") in note
    assert relative_improvement_note(tmp_path, {}, ["L08-medium"]) == ""  # no GRPO run: nothing to divide by


def test_each_baseline_is_compared_with_uec_rl_per_band_with_welchs_interval(tmp_path):
    levels = ["L08-medium", "L13-hard"]
    seeds = {
        "uec": [(0.50, 0.10), (0.46, 0.12), (0.48, 0.11)],
        "dapo": [(0.52, 0.07), (0.53, 0.08)],
        "uec_no_replay": [(0.40, 0.09), (0.41, 0.08)],  # an ablation: its own block, not a baseline line
    }
    runs = {
        method: [
            _finished_levels(tmp_path / "runs" / method / f"seed{k}", dict(zip(levels, v))) for k, v in enumerate(vs, 1)
        ]
        for method, vs in seeds.items()
    }
    _finished_levels(tmp_path / "runs" / "base" / "seed1", dict(zip(levels, (0.40, 0.04))))
    lines = claim_lines(tmp_path, runs, levels)
    baseline_lines = [line for line in lines if line.startswith("- DAPO")]
    assert baseline_lines == [
        # by hand: medium 0.525 - 0.480, se = sqrt(0.02^2/3 + 0.00707^2/2) = 0.01258, Welch df 2.6 -> 2, t = 4.303;
        # hard 0.075 - 0.110, se = sqrt(0.01^2/3 + 0.00707^2/2) = 0.00764, df 2.9 -> 2
        "- DAPO (2 seeds): medium +4.5 ± 5.4 (does not exclude 0), hard -3.5 ± 3.3 (excludes 0)"
    ]
    assert not any(line.startswith("- w/o replay (") for line in lines)


def test_seeds_without_spread_are_reported_as_such_not_as_an_interval_excluding_zero(tmp_path):
    levels = ["L08-medium", "L13-hard"]
    seeds = {"uec": [(0.50, 0.10), (0.50, 0.12)], "dapo": [(0.60, 0.07), (0.60, 0.08)]}  # medium: no spread
    runs = {
        method: [
            _finished_levels(tmp_path / "runs" / method / f"seed{k}", dict(zip(levels, v))) for k, v in enumerate(vs, 1)
        ]
        for method, vs in seeds.items()
    }
    _finished_levels(tmp_path / "runs" / "base" / "seed1", dict(zip(levels, (0.40, 0.04))))
    (line,) = [line for line in claim_lines(tmp_path, runs, levels) if line.startswith("- DAPO")]
    assert line.startswith("- DAPO (2 seeds): medium +10.0, no spread (2 seeds), hard ")
    # GRPO's gain over a single base evaluation, every seed alike: the ratio to it is left out, and says why
    grpo = {"grpo": [_finished_run(tmp_path / "runs" / "grpo" / f"seed{k}", 0.5) for k in (1, 2)]}
    assert "no spread" in relative_improvement_note(tmp_path, grpo, ["L08-medium"])


def test_each_run_composes_the_study_groups_then_its_method(tmp_path):
    import sys

    from uec_recipe.main_uec import dry_run_config

    demo = study.Demo(*(Path("/demo") / n for n in ("model", "train.parquet", "test.parquet", "eval", "report")))
    for method, check in (
        ("kl_cov", lambda c: c.actor_rollout_ref.actor.ppo_mini_batch_size == 16),  # the method's override wins
        ("dapo", lambda c: c.reward.reward_kwargs.overlong_buffer_cfg.len == 24),  # task_algo/chain_sum_dapo.yaml
        ("uec_no_replay", lambda c: c.uec.enable and not c.uec.replay.enable),
    ):
        command = study.train_command(study.RunSpec(method, 2, 7), demo, tmp_path / method, study.STUDY_GROUPS)
        assert command[:3] == [sys.executable, "-m", "uec_recipe.main_uec"]
        config = dry_run_config(command[3:])
        assert check(config), method
        # the study's sizes and the paper's UEC-RL knobs, on the CPU backend and the demo's reward
        assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (16, 5)  # setting/study_v2
        assert (config.uec.exploration.n, config.uec.replay.adv_threshold, config.uec.replay.frequency) == (20, 1.0, 5)
        assert config.actor_rollout_ref.rollout.name == "hf" and config.uec.sample_poll_interval_s == 0.05
        assert config.reward.custom_reward_function.path == "pkg://uec_lab.demo.reward"
        assert (config.trainer.total_training_steps, config.data.seed) == (7, study.SEED_BASE + 2)


def test_the_recorded_settings_are_what_the_study_changes_from_the_papers():
    settings = study.effective_settings(study.STUDY_GROUPS)
    assert "data.train_batch_size=16" in settings and "actor_rollout_ref.actor.optim.lr=0.0001" in settings
    assert not any(s.startswith("uec.exploration.n=") for s in settings)  # the paper's G' = 20: not a change
    assert "data.train_batch_size=64" in study.effective_settings([*study.STUDY_GROUPS, "data.train_batch_size=64"])


def _run_study_with(monkeypatch, tmp_path, fake_run_one, jobs: int) -> None:
    monkeypatch.setattr(study, "split_eval_by_level", lambda demo, folder: [])
    monkeypatch.setattr(study, "evaluate_base", lambda *args, **kwargs: None)
    monkeypatch.setattr(study, "run_one", fake_run_one)
    specs = study.plan(["grpo", "uec"], seeds=3, other_seeds=1, steps=2)
    demo = study.Demo(*(tmp_path / name for name in ("model", "train", "test", "eval", "report")))
    study.run_study(tmp_path / "out", specs, demo, jobs=jobs)


def test_jobs_train_runs_side_by_side_and_record_that_they_shared_the_machine(monkeypatch, tmp_path, capsys):
    running, most, lock, seen = [0], [0], threading.Lock(), []

    def fake_run_one(spec, demo, out, eval_files, base_overrides, eval_settings, extra_overrides, jobs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            seen.append((spec.name, jobs))
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return {"train_seconds": 1.0, "eval_seconds": 1.0}

    _run_study_with(monkeypatch, tmp_path, fake_run_one, jobs=2)
    assert most[0] == 2 and sorted(seen) == sorted(
        (s, 2) for s in ["grpo/seed1", "uec/seed1", "grpo/seed2", "uec/seed2", "grpo/seed3", "uec/seed3"]
    )
    out = capsys.readouterr().out
    assert "[study] 2 runs at a time: they share the machine, so the report shows no cost for them" in out
    assert "[study] run 6/6:" in out and "[study] all 6 runs finished" in out


def test_a_failed_run_starts_no_further_run_when_runs_go_side_by_side(monkeypatch, tmp_path):
    started = []

    def fake_run_one(spec, demo, out, eval_files, base_overrides, eval_settings, extra_overrides, jobs):
        started.append(spec.name)
        time.sleep(0.3)
        if spec.name == "grpo/seed1":
            raise RuntimeError("training failed")
        time.sleep(0.3)
        return {"train_seconds": 1.0, "eval_seconds": 1.0}

    with pytest.raises(RuntimeError, match="training failed"):
        _run_study_with(monkeypatch, tmp_path, fake_run_one, jobs=2)
    assert sorted(started) == ["grpo/seed1", "uec/seed1"]  # the two started at once; nothing after the failure


def test_jobs_must_be_positive(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _planned_by_command_line(monkeypatch, tmp_path, "--jobs", "0")
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
