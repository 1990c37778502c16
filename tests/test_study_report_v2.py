"""The second study's report (uec_lab/study/report_v2.py) on a synthetic study folder written here: endpoints against
values worked out by hand, the per-seed CSVs regenerating the same numbers, compact records (idempotent, refusing
what differs) and the page rendered from records alone. No training, no model."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from uec_lab.study import report_v2
from uec_lab.study import run as study
from uec_lab.study.plan import parse_plan
from uec_recipe.eval.stats import iqm_bootstrap

RESAMPLES = 200  # enough for the structure; the page's default is 10,000
LEVELS = {"L03-easy": 3, "L05-medium": 5, "L06-medium": 6, "L08-hard": 8, "L09-hard": 9}
STEPS = 10  # W = max(1, 10 // 10) = 1: an entropy change is step 10's value minus step 1's

PLAN = """\
```yaml study-plan
task: chains
steps: 10
analysis: paired
alpha: 0.05
seeds: {grpo: 3, uec: 3, uec_no_exploration: 3}
primary:
  - {id: P1, kind: accuracy, method: uec, reference: grpo, band: hard, direction: positive}
  - {id: P2, kind: entropy_change, metric: entropy/regular_rollout, method: uec, reference: grpo, direction: positive}
secondary:
  - {id: S1, kind: accuracy, method: uec, reference: grpo, band: medium, direction: positive}
  - {id: S2, kind: pass_at_k, k: 16, method: uec, reference: grpo, band: hard, direction: positive}
  - {id: S3, kind: greedy, method: uec, reference: uec_no_exploration, band: hard, direction: positive}
```
"""

# Per seed, per level: sampled accuracy (avg@16). The differences uec - grpo were chosen for round figures:
#   hard (mean of L08, L09):   uec 0.25, 0.30, 0.35; grpo 0.15, 0.20, 0.20 -> differences 0.10, 0.10, 0.15
#   medium (mean of L05, L06): differences 0.02, 0.04, 0.06
ACCURACY = {
    "base": [{"L03-easy": 0.8, "L05-medium": 0.4, "L06-medium": 0.3, "L08-hard": 0.05, "L09-hard": 0.02}] * 3,
    "grpo": [
        {"L03-easy": 0.90, "L05-medium": 0.50, "L06-medium": 0.40, "L08-hard": 0.20, "L09-hard": 0.10},
        {"L03-easy": 0.92, "L05-medium": 0.52, "L06-medium": 0.42, "L08-hard": 0.22, "L09-hard": 0.18},
        {"L03-easy": 0.91, "L05-medium": 0.48, "L06-medium": 0.40, "L08-hard": 0.21, "L09-hard": 0.19},
    ],
    "uec": [
        {"L03-easy": 0.90, "L05-medium": 0.52, "L06-medium": 0.42, "L08-hard": 0.30, "L09-hard": 0.20},
        {"L03-easy": 0.93, "L05-medium": 0.56, "L06-medium": 0.46, "L08-hard": 0.35, "L09-hard": 0.25},
        {"L03-easy": 0.90, "L05-medium": 0.54, "L06-medium": 0.46, "L08-hard": 0.40, "L09-hard": 0.30},
    ],
    "uec_no_exploration": [  # two of the three planned seeds finished
        {"L03-easy": 0.90, "L05-medium": 0.50, "L06-medium": 0.40, "L08-hard": 0.25, "L09-hard": 0.20},
        {"L03-easy": 0.90, "L05-medium": 0.50, "L06-medium": 0.40, "L08-hard": 0.25, "L09-hard": 0.20},
    ],
}
# pass@16 on the hard levels: uec - grpo = 0.10, 0.11, 0.12 (every other level: accuracy + 0.3)
PASS16_HARD = {"grpo": [0.50, 0.50, 0.50], "uec": [0.60, 0.61, 0.62], "uec_no_exploration": [0.55, 0.55]}
# greedy on the hard levels: uec - uec_no_exploration = 0.10 (seed 1), 0.30 (seed 2)
GREEDY_HARD = {"grpo": [0.1, 0.1, 0.1], "uec": [0.3, 0.5, 0.4], "uec_no_exploration": [0.2, 0.2], "base": [0.0] * 3}
# entropy/regular_rollout changes from step 1 to step 10: uec - grpo = 0.07, 0.08, 0.09
ENTROPY_CHANGE = {"grpo": [-0.05, -0.04, -0.06], "uec": [0.02, 0.04, 0.03], "uec_no_exploration": [0.0, 0.01]}


def _summary(path: Path, accuracy: float, pass16: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    passes = {"1": accuracy} if pass16 is None else {"1": accuracy, "2": accuracy, "16": pass16}
    n = 1 if pass16 is None else 16
    path.write_text(json.dumps({"avg@n": accuracy, "pass@k": passes, "n": n, "num_problems": 4}, indent=2))


def _metrics(method: str, seed: int) -> list[dict]:
    """verl's file-logger lines: a validation line at step 0, then steps 1..STEPS. Entropy moves linearly, so every
    step-to-step change is change / 9. UEC-RL updates on even steps and replays on steps 4 and 5."""
    change = ENTROPY_CHANGE[method][seed - 1]
    lines = [{"step": 0, "data": {"val-core/acc": 0.5}}]
    for step in range(1, STEPS + 1):
        entropy = 1.0 + change * (step - 1) / (STEPS - 1)
        data = {
            "entropy/regular_rollout": entropy,
            "entropy/regular_rollout/hard": entropy + 0.5,
            "timing_s/step": 10.0 + seed if step > 1 else 100.0,
            "tokens/trained": 1000,
            "critic/score/mean": 0.5,
            "actor/pg_loss": 0.1,  # not read by the report: left out of a record
            "entropy/update_rows/main": 2.0 + step / 100,
            "entropy/cov_logp_adv/main": 0.01 * seed,
        }
        if method.startswith("uec"):
            replay = step in (4, 5)
            data.update({
                "uec/update_ran": int(step % 2 == 0),
                "uec/replay_rows": 64 if replay else 0,
                "uec/exploration_group_successes/0": 3,
                "uec/exploration_group_successes/2": 1,
                "tokens/trained": 2000 if step % 2 == 0 else 0,
                "timing_s/step": 20.0 + seed if step > 1 else 100.0,
            })  # fmt: skip
            if replay:
                data.update({"uec/replay_negative_share": 0.0, "entropy/cov_logp_adv/replay": 0.02})
            if step % 2:
                del data["entropy/update_rows/main"], data["entropy/cov_logp_adv/main"]
        lines.append({"step": step, "data": data})
    return lines


def write_study(folder: Path, commit: str | None = None) -> Path:
    """A finished study folder of task v2, as ``run_study`` leaves it (checkpoints and samples included)."""
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "demo" / "train.parquet"
    train.parent.mkdir()
    # training answers: level 8 has "111" three times and "222" once; level 9 only "333"
    rows = [("111", 8)] * 3 + [("222", 8), ("333", 9), ("444", 3)]
    pd.DataFrame(
        [{"reward_model": {"ground_truth": a}, "extra_info": {"level": lv, "band": "x"}} for a, lv in rows]
    ).to_parquet(train)
    (folder / "eval_data").mkdir()
    for bench in LEVELS:
        answers = {"L08-hard": ["111", "222", "999", "111", "555"], "L09-hard": ["333"] * 5}.get(bench, ["000"] * 5)
        pd.DataFrame([{"reward_model": {"ground_truth": a}} for a in answers]).to_parquet(
            folder / "eval_data" / f"{bench}.parquet"
        )
    study_json = {
        "runs": [{"method": m, "seed": k, "steps": STEPS} for m in ("grpo", "uec") for k in (1, 2, 3)],
        "overrides": ["platform=cpu", "task=chain_sum", "setting=study"],
        "settings": ["data.train_batch_size=32", "uec.exploration.n=8"],
        "eval": {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96, "problems_per_level": 4},
        "task": "chains",
        "demo": {"train": str(train)},
    }
    (folder / "study.json").write_text(json.dumps(study_json, indent=2))
    for method, seeds in ACCURACY.items():
        for seed, accuracy in enumerate(seeds, start=1):
            run = folder / "runs" / method / f"seed{seed}"
            for bench, value in accuracy.items():
                hard = bench.endswith("hard")
                pass16 = PASS16_HARD[method][seed - 1] if hard and method in PASS16_HARD else min(1.0, value + 0.3)
                _summary(run / "eval" / bench / "summary.json", value, pass16)
                (run / "eval" / bench / "samples.jsonl").write_text('{"problem_id": 0}\n')
                greedy = GREEDY_HARD[method][seed - 1] if hard and method in GREEDY_HARD else value
                _summary(run / "eval_greedy" / bench / "summary.json", greedy, None)
            done = {"machine": "Test CPU, 2 cores", "eval_seconds": 60.0}
            if method != "base":
                done.update(method=method, seed=seed, steps=STEPS, train_seconds=3600.0,
                            code={"commit": commit, "uncommitted_changes": False})  # fmt: skip
                lines = _metrics(method, seed)
                (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
                (run / "checkpoints").mkdir()
                (run / "checkpoints" / "model.bin").write_bytes(b"weights")
            (run / "done.json").write_text(json.dumps(done, indent=2))
    unfinished = folder / "runs" / "uec_no_exploration" / "seed3"
    (unfinished / "eval").mkdir(parents=True)  # interrupted: no done.json, not a finished run
    return folder


@pytest.fixture
def plan():
    return parse_plan(PLAN, "study-plan.md")


@pytest.fixture
def out(tmp_path):
    return write_study(tmp_path / "study")


def test_the_endpoints_match_the_hand_computed_differences_holm_intervals_and_verdicts(out, plan):
    per_seed = report_v2.collect(out, plan)
    results = {r.endpoint.id: r for r in report_v2.analyse(plan, per_seed)}

    # P1: differences 0.10, 0.10, 0.15: mean 0.11667, s = 0.028868, se = s / sqrt(3) = 0.016667, t(0.975, 2) = 4.3027
    # -> half-width 0.071711; t = 7, and with 2 df the two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - 7 / sqrt(51)
    p1 = results["P1"]
    assert p1.method_values == pytest.approx({1: 0.25, 2: 0.30, 3: 0.35})
    assert p1.estimate.mean == pytest.approx(0.116667, abs=1e-6)
    assert p1.estimate.half_width == pytest.approx(0.071711, abs=1e-6)
    assert p1.p == pytest.approx(1 - 7 / math.sqrt(51), rel=1e-9)
    assert (p1.verdict, p1.level_text) == ("holds", "primary, 95%")

    # P2 (entropy, W = 1): changes 0.07, 0.08, 0.09: mean 0.08, se 0.0057735, half-width 4.3027 * se = 0.024841
    p2 = results["P2"]
    assert p2.estimate.mean == pytest.approx(0.08) and p2.estimate.half_width == pytest.approx(0.024841, abs=1e-6)
    assert p2.verdict == "holds"

    # Secondary family, m = 3, Holm. Raw p (2 df: 1 - t / sqrt(t^2 + 2); 1 df: 1 - (2 / pi) atan t):
    #   S2 pass@16: 0.10, 0.11, 0.12 -> t = 0.11 / 0.0057735 = 19.053, p = 0.0027  (rank 1, tested at 0.05/3: rejected)
    #   S1 medium:  0.02, 0.04, 0.06 -> t = 3.4641, p = 0.07418                     (rank 2, at 0.05/2: not rejected)
    #   S3 greedy:  0.10, 0.30 (2 seeds) -> t = 2, 1 df, p = 0.29517               (rank 3: stays at 0.05/2)
    s1, s2, s3 = results["S1"], results["S2"], results["S3"]
    p_s2 = 1 - 19.05255 / math.sqrt(19.05255**2 + 2)
    assert s2.p == pytest.approx(3 * p_s2, rel=1e-4)  # adjusted: 3 p
    assert s1.p == pytest.approx(2 * (1 - 3.4641016 / math.sqrt(14)), rel=1e-6)  # max(3 p_S2, 2 p_S1)
    assert s3.p == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-9)  # max(previous, p_S3)
    # S2 at 1 - 0.05/3: t(0.991667, 2) = (2p - 1) / sqrt(2 p (1 - p)) = 7.6489; half-width 7.6489 * 0.0057735
    assert s2.estimate.level == pytest.approx(1 - 0.05 / 3)
    assert s2.estimate.half_width == pytest.approx(7.648857 * 0.0057735, rel=1e-4)
    # S1 at 1 - 0.05/2: t(0.9875, 2) = 6.2053; half-width 6.2053 * 0.011547 = 0.071653: [-0.0317, 0.1117]
    assert s1.estimate.level == pytest.approx(0.975) and s3.estimate.level == pytest.approx(0.975)
    assert s1.estimate.half_width == pytest.approx(0.071653, abs=1e-5)
    assert (s1.verdict, s2.verdict) == ("not shown", "holds")
    # S3: uec_no_exploration finished 2 of its 3 planned seeds: inconclusive, whatever its interval
    assert s3.verdict == "inconclusive" and s3.note == "uec_no_exploration: 2 of 3 planned seeds"

    table = report_v2.endpoint_table(list(results.values()))
    claim = "UEC-RL − GRPO: sampled accuracy (avg@n) on the hard levels is higher under UEC-RL"
    assert table[2].startswith(f"| P1 | {claim} |")
    assert "| +11.7 [+4.5, +18.8] (3 seeds) points | primary, 95% | 0.0198 | holds |" in table[2]
    assert "| +0.080 [+0.055, +0.105] (3 seeds) nats | primary, 95% |" in table[3]
    assert "| +4.0 [-3.2, +11.2] (3 seeds) points | Holm-adjusted, 97.5% | 0.148 (adjusted) | not shown |" in table[4]
    assert "| +11.0 [+6.6, +15.4] (3 seeds) points | Holm-adjusted, 98.33% |" in table[5]
    assert table[6].endswith("| inconclusive (uec_no_exploration: 2 of 3 planned seeds) |")


def test_seeds_beyond_the_plan_stay_out_of_the_claims(out, plan):
    per_seed = report_v2.collect(out, plan)
    before = report_v2.endpoint_table(report_v2.analyse(plan, per_seed))
    for row in [r for r in per_seed.levels if r.method == "grpo" and r.seed == 1]:
        per_seed.levels.append(report_v2.LevelScore("grpo", 4, row.level, row.band, 0.99, row.passes, 0.99))
    assert report_v2.endpoint_table(report_v2.analyse(plan, per_seed)) == before
    welch = parse_plan(PLAN.replace("analysis: paired", "analysis: welch"))
    assert report_v2.analyse(welch, per_seed)[0].reference_values == pytest.approx({1: 0.15, 2: 0.20, 3: 0.20})


def test_an_endpoint_without_values_is_inconclusive_and_says_why(out):
    plan = parse_plan(
        PLAN.replace("k: 16", "k: 32")
        .replace("band: medium", "band: between")
        .replace("seeds: {grpo: 3,", "seeds: {dapo: 2, grpo: 3,")
        .replace("reference: uec_no_exploration", "reference: dapo")
    )
    results = {r.endpoint.id: r for r in report_v2.analyse(plan, report_v2.collect(out, plan))}
    assert results["S1"].verdict == "inconclusive" and results["S1"].estimate is None
    assert "uec: 0 of 3 planned seeds, no level of the study is in band between (bands: easy, medium, hard)" in (
        results["S1"].note
    )
    assert "the evaluation has no pass@32" in results["S2"].note
    assert results["S3"].note == "dapo: 0 of 2 planned seeds, dapo has no finished run"
    # the primary endpoints are their own claims: unaffected
    assert results["P1"].verdict == "holds"
    table = report_v2.endpoint_table(list(results.values()))
    assert "| no runs points | - | - | inconclusive (" in table[4]


def test_per_level_columns_follow_the_level_order_whatever_the_bands():
    # a level "between" two bands sorts after the bands in band order, but its column stays in level order
    rows = [report_v2.LevelScore("grpo", 1, level, band, level / 10, {16: 1.0}, None)
            for level, band in ((9, "hard"), (7, "between"), (5, "medium"))]  # fmt: skip
    per_seed = report_v2.PerSeed(levels=rows)
    assert list(per_seed.band_levels()) == ["medium", "hard", "between"]
    assert per_seed.level_bands() == {5: "medium", 7: "between", 9: "hard"}
    assert report_v2.level_cells(per_seed, "grpo", "accuracy") == ["50.0 (1 seed)", "70.0 (1 seed)", "90.0 (1 seed)"]
    header = report_v2.accuracy_tables(per_seed, ["grpo"], 10)[2]
    assert header == "| method | seeds | L05-medium | L07-between | L09-hard |"


def test_welch_analysis_and_no_spread(out, plan):
    welch = parse_plan(PLAN.replace("analysis: paired", "analysis: welch"))
    per_seed = report_v2.collect(out, welch)
    p1 = report_v2.analyse(welch, per_seed)[0]
    assert p1.estimate.df != 2  # Welch–Satterthwaite, not the paired test's k - 1
    assert p1.estimate.mean == pytest.approx(0.116667, abs=1e-6)
    # identical paired differences: no spread, verdict "not shown"
    same = report_v2.compare({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.5}, "paired", 0.95)
    assert report_v2.interval_text(same, 100, 1) == "+10.0, no spread (2 seeds)"
    assert same.verdict("positive") == "not shown"
    assert report_v2.compare({1: 0.5}, {2: 0.4}, "paired", 0.95) is None  # no common seed


def test_the_iqm_per_band_is_stratified_by_level(out, plan):
    per_seed = report_v2.collect(out, plan)
    # uec, hard: L08 0.30 0.35 0.40, L09 0.20 0.25 0.30. Six values, the middle half [1.5, 4.5]:
    # (0.5 * 0.25 + 0.30 + 0.30 + 0.5 * 0.35) / 3 = 0.30
    expected = iqm_bootstrap({8: [0.30, 0.35, 0.40], 9: [0.20, 0.25, 0.30]}, resamples=RESAMPLES)
    assert expected.value == pytest.approx(0.30)
    cells = report_v2.band_cells(per_seed, "uec", "accuracy", True, RESAMPLES)
    bands = list(per_seed.band_levels())
    assert bands == ["easy", "medium", "hard"]
    assert cells[2 * bands.index("hard") + 1] == expected.format(100, 1)
    assert cells[2 * bands.index("hard")].startswith("30.0 ± ")


def test_the_csv_files_regenerate_the_endpoint_table_exactly(out, plan, tmp_path):
    per_seed = report_v2.collect(out, plan)
    paths = per_seed.to_csv(tmp_path / "csv")
    assert [p.name for p in paths] == ["accuracy.csv", "entropy.csv", "cost.csv"]
    header = paths[0].read_text().splitlines()[0]
    assert header == "method,seed,level,band,accuracy,pass@16,greedy"
    assert "base,1,8,hard,0.05,0.35,0.0" in paths[0].read_text()
    again = report_v2.PerSeed.from_csv(tmp_path / "csv")
    assert again == per_seed
    original = report_v2.endpoint_table(report_v2.analyse(plan, per_seed))
    assert report_v2.endpoint_table(report_v2.analyse(plan, again)) == original
    # and the page quotes exactly those lines
    report = report_v2.write_report(out, plan, tmp_path / "study-plan.md", tmp_path / "csv2", resamples=RESAMPLES)
    page = report.read_text()
    assert all(line in page for line in original)
    assert report_v2.PerSeed.from_csv(tmp_path / "csv2") == per_seed


def test_entropy_changes_are_grouped_by_what_updated_the_policy():
    assert report_v2.update_kind({}) == "main only"  # a method without UEC-RL's step metrics updates every step
    assert report_v2.update_kind({"uec/update_ran": 0, "uec/replay_rows": 0}) == "no update"
    assert report_v2.update_kind({"uec/update_ran": 1, "uec/replay_rows": 64}) == "main + replay"
    assert report_v2.update_kind({"uec/update_ran": 0, "uec/replay_rows": 64}) == "replay only"
    rows = [
        {"step": 1, "h": 1.0, "uec/update_ran": 0},
        {"step": 2, "h": 1.5, "uec/update_ran": 1},
        {"step": 3, "h": 1.2, "uec/update_ran": 1, "uec/replay_rows": 8},
        {"step": 4, "h": 1.0, "uec/update_ran": 0},
        {"step": 6, "h": 0.0, "uec/update_ran": 0},  # step 5 not logged: no change from step 4 or into step 6
    ]
    changes = report_v2.step_changes(rows, "h")
    assert changes == {"no update": [0.5], "main only": [pytest.approx(-0.3)], "main + replay": [pytest.approx(-0.2)]}
    assert report_v2.entropy_order(["grpo", "uec", "dapo", "uec_release"]) == ["grpo", "uec", "uec_release", "dapo"]


def test_record_copies_compact_records_once_and_refuses_one_that_differs(out, tmp_path):
    records = tmp_path / "records"
    messages = report_v2.record_runs(out, records)
    assert messages[-1] == f"recorded 11 run(s) into {records}; 0 already recorded and unchanged"
    run = records / "runs" / "uec" / "seed2"
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == [
        "done.json",
        *(f"eval/{b}/summary.json" for b in sorted(LEVELS)),
        *(f"eval_greedy/{b}/summary.json" for b in sorted(LEVELS)),
        "metrics.jsonl",
    ]  # no checkpoints, no samples
    kept = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in kept] == list(range(1, STEPS + 1))  # the validation line kept nothing
    assert "actor/pg_loss" not in kept[0]["data"] and kept[0]["data"]["entropy/regular_rollout"] == 1.0
    assert not (records / "runs" / "uec_no_exploration" / "seed3").exists()  # unfinished: not recorded
    answers = json.loads((records / "answers.json").read_text())["levels"]
    assert answers["L08-hard"] == {"train": {"111": 3, "222": 1}, "eval": ["111", "222", "999", "111"]}  # 4 evaluated

    before = {p: p.stat().st_mtime_ns for p in records.rglob("*") if p.is_file() and p.parent != records}
    assert report_v2.record_runs(out, records)[-1].endswith("0 run(s) into " + str(records) + "; 11 already recorded "
                                                            "and unchanged")  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in before} == before  # left alone

    summary = run / "eval" / "L08-hard" / "summary.json"
    summary.write_text(summary.read_text().replace("0.35", "0.36"))
    with pytest.raises(SystemExit, match=r"records/runs/uec/seed2 differs from .*uec/seed2 in eval/L08-hard/summary"):
        report_v2.record_runs(out, records)
    summary.unlink()
    with pytest.raises(SystemExit, match="in eval/L08-hard/summary.json"):  # a missing file differs as well
        report_v2.record_runs(out, records)


def test_an_interrupted_record_is_written_again_and_new_runs_are_added(out, tmp_path):
    records = tmp_path / "records"
    report_v2.record_runs(out, records)
    (records / "runs" / "grpo" / "seed1" / "done.json").unlink()  # as if interrupted before its last file
    extra = out / "runs" / "uec_no_exploration" / "seed3"
    write_study(tmp_path / "again")
    for item in (tmp_path / "again" / "runs" / "uec_no_exploration" / "seed2").iterdir():
        target = extra / item.name
        if item.is_dir():
            import shutil

            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            target.write_bytes(item.read_bytes())
    assert report_v2.record_runs(out, records)[-1].startswith("recorded 2 run(s)")
    study_json = json.loads((out / "study.json").read_text())
    study_json["settings"].append("data.train_batch_size=64")
    (out / "study.json").write_text(json.dumps(study_json))
    with pytest.raises(SystemExit, match="records another study's settings"):
        report_v2.record_runs(out, records)


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_report_renders_from_the_records_alone_with_the_plans_commit(tmp_path, plan):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    _git(repo, "init", "-q")
    plan_path = repo / "docs" / "study-plan.md"
    plan_path.write_text(PLAN)
    _git(repo, "add", "docs/study-plan.md")
    _git(repo, "commit", "-q", "-m", "plan")
    commit = _git(repo, "log", "-1", "--format=%H", "--", "docs/study-plan.md")
    out = write_study(tmp_path / "study", commit=commit)
    records = tmp_path / "records"
    report_v2.record_runs(out, records)
    import shutil

    shutil.rmtree(out)  # the records are all the report needs
    page = report_v2.write_report(records, plan, plan_path, tmp_path / "csv", resamples=RESAMPLES).read_text()
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Plan and its commit",
        "## What ran where",
        "## Deviations from the plan",
        "## Claims",
        "## Accuracy per level and band",
        "## Greedy accuracy per level",
        "## pass@k per level against a question-blind guesser",
        "## Entropy",
        "## Cost per step and per trained token",
        "## Exploratory",
    ]
    assert f"last changed in commit `{commit}`." in page
    assert "8 of 8 runs trained from code that contains the plan's commit." in page
    assert "- missing: uec_no_exploration seed 3 (planned 3, finished 2)" in page
    assert "- A: Test CPU, 2 cores" in page and "| UEC-RL | A (1.02 h) | A (1.02 h) | A (1.02 h) |" in page
    # the guesser (4 evaluated problems; no training answers at L05 and L06): L08's answers 111, 222, 999, 111 have
    # training frequencies p = 3/4, 1/4, 0, 3/4; pass@16 is the mean of 1 - (1 - p)^16
    l08 = (2 * (1 - 0.25**16) + (1 - 0.75**16)) / 4
    assert f"| question-blind guesser | 0.0 | - | - | {100 * l08:.1f} | 100.0 |" in page
    # cost: GRPO 10 + seed s per step, UEC-RL 20 + s: ratio 22 / 12
    assert "| UEC-RL | 22.00 ± " in page and f"| {22 / 12:.2f} [" in page
    # entropy: GRPO changes linearly, so every step-to-step change is change / 9 (mean -0.005, 9 steps per seed)
    assert "| GRPO | main only | -0.0056 ± " in page and "(27) |" in page
    assert "| UEC-RL | main + replay |" in page and "| UEC-RL | replay only |" in page
    assert "| UEC-RL | 0.0 ± 0.0" not in page  # no zero-width interval printed as one
    assert "## Exploratory\n\nNot in the plan" in page
    assert "| UEC-RL − GRPO | +0.0 [-2.5, +2.5] (3 seeds) | endpoint S1 (Claims) | endpoint P1 (Claims) |" in page
    assert "| GRPO | 12.00 ± 2.48 | 1 (reference) |" in page
    assert "| UEC-RL, release rules" not in page  # not run: no row


def test_the_command_line_dispatches_by_task_and_records(tmp_path, plan, capsys, monkeypatch):
    out = write_study(tmp_path / "study")
    plan_path = tmp_path / "study-plan.md"
    plan_path.write_text(PLAN)
    assert study.main(["record", "--out", str(out), "--to", str(tmp_path / "records")]) == 0
    assert "recorded 11 run(s)" in capsys.readouterr().out
    arguments = ["report", "--out", str(tmp_path / "records"), "--plan", str(plan_path), "--csv", str(tmp_path / "c")]
    monkeypatch.setattr(report_v2, "RESAMPLES", RESAMPLES)
    assert study.main(arguments) == 0
    assert (tmp_path / "records" / "report.md").is_file() and (tmp_path / "c" / "accuracy.csv").is_file()
    assert "The plan file is not committed" in capsys.readouterr().out
    # a chains study without a plan keeps the first study's report layout; with --plan, a bad plan is refused
    calls = []
    monkeypatch.setattr("uec_lab.study.report.write_report", lambda folder, line: calls.append(folder))
    assert study.main(arguments[:3]) == 0 and calls == [tmp_path / "records"]
    bad = tmp_path / "bad.md"
    bad.write_text("no plan")
    with pytest.raises(SystemExit, match="expected exactly one ```yaml study-plan block"):
        study.main([*arguments[:3], "--plan", str(bad)])


def test_runs_that_shared_the_machine_get_no_cost_and_keep_that_through_the_csv(out, plan, tmp_path):
    shared = out / "runs" / "uec" / "seed2" / "done.json"
    shared.write_text(json.dumps({**json.loads(shared.read_text()), "concurrent_runs": 2}))
    per_seed = report_v2.collect(out, plan)
    assert [c.concurrent_runs for c in per_seed.cost if (c.method, c.seed) == ("uec", 2)] == [2]
    per_seed.to_csv(tmp_path / "csv")
    assert report_v2.PerSeed.from_csv(tmp_path / "csv") == per_seed
    lines = report_v2.cost_lines(per_seed, ["grpo", "uec"], RESAMPLES)
    assert lines[0] == "Not shown for 1 run(s) trained while other runs shared the machine (`run --jobs`): uec seed 2."
    # UEC-RL's cost comes from seeds 1 and 3 alone: 20 + s per step, mean 22
    assert any(line.startswith("| UEC-RL | 22.00 ± ") for line in lines)
    for c in per_seed.cost:
        c.concurrent_runs = 2
    assert report_v2.cost_lines(per_seed, ["grpo", "uec"], RESAMPLES)[-1] == (
        "No run logged `timing_s/step` on a machine of its own."
    )
