"""The run summary: start/end figures, UEC stage totals and the pass@k table, from verl's file-logger lines."""

from __future__ import annotations

import json

from uec_lab.summary import build_summary, read_metrics, timing_table


def write_log(path, records):
    path.write_text("\n".join(json.dumps({"step": step, "data": data}) for step, data in records) + "\n")


def test_summary_from_file_logger_lines(tmp_path):
    log = tmp_path / "metrics.jsonl"
    base = {
        "training/global_step": 0,
        "uec/difficult_prompts": 2,
        "uec/exploration_samples": 16,
        "uec/exploration_kept": 1,
        "uec/regular_kept": 10,
        "uec/replay_rows": 0,
    }
    write_log(
        log,
        [
            (0, {"val-core/uec_demo/digit_sum/acc/mean@4": 0.25}),
            (1, {**base, "critic/score/mean": 0.2, "uec/update_ran": 0, "uec/replay_updates_total": 0}),
            (
                2,
                {
                    **base,
                    "critic/score/mean": 0.4,
                    "uec/update_ran": 1,
                    "uec/replay_updates_total": 0,
                    "entropy/regular_rollout": 0.3,
                },
            ),
            (
                3,
                {
                    **base,
                    "critic/score/mean": 0.6,
                    "uec/update_ran": 1,
                    "uec/replay_rows": 32,
                    "uec/replay_updates_total": 1,
                    "entropy/regular_rollout": 0.2,
                },
            ),
            (
                3,
                {
                    "val-core/uec_demo/digit_sum/acc/mean@4": 0.5,
                    "val-passk/uec_demo/digit_sum/pass@1": 0.5,
                    "val-passk/uec_demo/digit_sum/pass@2": 0.6,
                    "val-passk/uec_demo/digit_sum/n": 2,
                    "val-passk/uec_demo/digit_sum/temperature": 0.5,
                    "val-passk/uec_demo/digit_sum/top_p": 1.0,
                },
            ),
        ],
    )
    rows = read_metrics(log)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # lines of one step are merged
    text = build_summary(rows, "uec", curves="curves.png")
    assert "| training accuracy (regular rollout) | 0.200 (1) | 0.600 (3) |" in text
    assert "| validation uec_demo/digit_sum mean@4 | 0.250 (0) | 0.500 (3) |" in text
    assert "| difficult prompts found | 6 |" in text and "| policy updates run | 2 |" in text
    assert "| steps that skipped the update (buffer below N0) | 1 |" in text
    assert "| replay (stabilizer) updates | 1 |" in text
    assert "| 3 | uec_demo/digit_sum | 2 | 0.500 | 1.000 | 0.500 | 0.600 |" in text
    assert "![training curves](curves.png)" in text


def test_timing_table_skips_the_warm_up_step():
    rows = [
        {"step": 1, "timing_s/step": 40.0, "timing_s/gen": 30.0},
        {"step": 2, "timing_s/step": 4.0, "timing_s/gen": 2.0, "timing_s/uec_bookkeeping": 0.04},
        {"step": 3, "timing_s/step": 2.0, "timing_s/gen": 1.0, "timing_s/uec_bookkeeping": 0.02},
    ]
    text = "\n".join(timing_table(rows))
    assert "| gen | 1.500 | 50.0% |" in text
    assert "| uec_bookkeeping | 0.030 | 1.0% |" in text
    assert "| whole step | 3.000 | 100% |" in text


def test_summary_reports_each_entropy_figure_and_what_replay_and_exploration_trained_on():
    histogram = "uec/exploration_group_successes/"
    logged = {
        1: {"entropy/regular_rollout/hard": 1.5, "entropy/regular_rollout/easy": 0.4},
        2: {
            "entropy/update_rows/main": 0.9,
            "entropy/update_rows/main/regular": 0.8,
            "entropy/update_rows/main/exploration": 1.6,
            "entropy/cov_logp_adv/main": -0.01,
            **{histogram + "0": 2, histogram + "1": 1, histogram + "2": 0},
        },
        3: {"entropy/update_rows/replay": 0.5, "entropy/cov_logp_adv/replay": 0.02, "uec/replay_negative_share": 0.25},
        4: {
            "entropy/regular_rollout/easy": 0.2,
            "entropy/update_rows/main": 0.7,
            **{histogram + "0": 1, histogram + "1": 0, histogram + "2": 1},
        },
        5: {"entropy/update_rows/replay": 0.3, "entropy/cov_logp_adv/replay": 0.02, "uec/replay_negative_share": 0.75},
    }
    rows = [
        {"step": k, "training/global_step": k, "uec/update_ran": 1, "entropy/regular_rollout": 1.0 / k, **data}
        for k, data in logged.items()
    ]
    lines = build_summary(rows, "uec").splitlines()
    # first and last logged value of each figure (a window of one: each has at most three values here)
    easy = lines.index("| rollout entropy, easy prompts | 0.400 (1) | 0.200 (4) |")
    hard = lines.index("| rollout entropy, hard prompts | 1.500 (1) | 1.500 (1) |")
    assert easy < hard  # bands in ladder order
    assert "| update-row entropy, the paper's figure (entropy/update_rows/main) | 0.900 (2) | 0.700 (4) |" in lines
    assert "| update-row entropy, exploration rows | 1.600 (2) | 1.600 (2) |" in lines
    assert "| update-row entropy, replay updates | 0.500 (3) | 0.300 (5) |" in lines
    assert "| Cov(log π_old, Â), main update | -0.010 (2) | -0.010 (2) |" in lines
    assert "| Cov(log π_old, Â), replay updates | 0.020 (3) | 0.020 (5) |" in lines
    # over the run: exploration groups by correct samples, and the mean negative share of the replay updates
    assert "| exploration groups with 0 correct samples | 3 |" in lines
    assert "| exploration groups with 1 correct sample | 1 |" in lines
    assert "| exploration groups with 2 correct samples | 1 |" in lines
    assert "| share of negative rows in a replay update (mean of 2) | 0.500 |" in lines


def test_summary_of_a_run_without_the_new_figures_has_no_rows_for_them():
    rows = [{"step": 1, "training/global_step": 1, "critic/score/mean": 0.5, "entropy/regular_rollout": 0.3}]
    text = build_summary(rows, "grpo")
    assert "update-row entropy" not in text and "Cov(" not in text and "prompts |" not in text
