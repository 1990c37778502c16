"""The pre-registered plan of the second study (uec_lab/study/plan.py): parsing docs/study-plan.md's block, the errors
that name the field at fault, and the check of the finished runs against the plan."""

from __future__ import annotations

import pytest

from uec_lab.study.plan import METHODS, PlanError, parse_plan, plan_block, plan_deviations, read_plan

PLAN = """\
# Study plan

Some prose before the block, with an unrelated fence:

```yaml
task: digits
```

```yaml study-plan
task: chains
steps: 100
analysis: paired          # paired | welch
alpha: 0.05
seeds: {grpo: 5, grpo_matched: 5, uec: 5, uec_release: 5, uec_no_exploration: 3}
primary:
  - {id: P1, kind: accuracy, method: uec, reference: grpo, band: hard, direction: positive}
  - {id: P2, kind: entropy_change, metric: entropy/regular_rollout, method: uec, reference: grpo, direction: positive}
secondary:
  - {id: S1, kind: accuracy, method: uec, reference: grpo_matched, band: medium, direction: positive}
  - {id: S2, kind: pass_at_k, k: 16, method: uec, reference: grpo, band: hard, direction: positive}
  - {id: S3, kind: greedy, method: uec, reference: uec_no_exploration, band: hard, direction: negative}
```

Prose after it.
"""


def _with(block: str) -> str:
    return f"```yaml study-plan\n{block}\n```\n"


BASE_BLOCK = """\
task: chains
steps: 20
analysis: welch
alpha: 0.1
seeds: {grpo: 2, uec: 3}
primary:
  - {id: P1, kind: accuracy, method: uec, reference: grpo, band: hard, direction: positive}"""


def test_the_plan_block_is_parsed_with_every_field_as_written():
    plan = parse_plan(PLAN, "docs/study-plan.md")
    assert (plan.task, plan.steps, plan.analysis, plan.alpha) == ("chains", 100, "paired", 0.05)
    assert list(plan.seeds) == ["grpo", "grpo_matched", "uec", "uec_release", "uec_no_exploration"]
    assert plan.seeds["uec_no_exploration"] == 3
    assert [e.id for e in plan.primary] == ["P1", "P2"] and [e.id for e in plan.secondary] == ["S1", "S2", "S3"]
    p2, s2, s3 = plan.primary[1], plan.secondary[1], plan.secondary[2]
    assert (p2.kind, p2.metric, p2.band, p2.family) == ("entropy_change", "entropy/regular_rollout", None, "primary")
    assert (s2.kind, s2.k, s2.band, s2.family) == ("pass_at_k", 16, "hard", "secondary")
    assert (s3.reference, s3.direction) == ("uec_no_exploration", "negative")
    assert plan.window == 10  # W = max(1, steps // 10)
    assert s2.claim() == "UEC-RL − GRPO: pass@16 on the hard levels is higher under UEC-RL"
    assert "lower under UEC-RL" in s3.claim()


def test_values_are_not_hard_coded():
    plan = parse_plan(_with(BASE_BLOCK))
    assert (plan.steps, plan.analysis, plan.alpha, plan.secondary) == (20, "welch", 0.1, ())
    assert plan.seeds == {"grpo": 2, "uec": 3}
    assert plan.window == 2
    assert parse_plan(_with(BASE_BLOCK.replace("steps: 20", "steps: 5"))).window == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("steps: 20", "steps: 0"), "'steps' must be a whole number >= 1, got 0"),
        (("steps: 20", "steps: true"), "'steps' must be a whole number >= 1"),
        (("analysis: welch", "analysis: pooled"), "'analysis' must be one of paired, welch; got 'pooled'"),
        (("alpha: 0.1", "alpha: 5"), "'alpha' must be a number in (0, 1), got 5"),
        (("task: chains", "task: sums"), "'task' must be one of"),
        (("task: chains\n", ""), "field 'task' is required"),
        (("seeds: {grpo: 2, uec: 3}", "seeds: {grpo: 2, uec: 0}"), "'seeds.uec' must be a whole number >= 1"),
        (("seeds: {grpo: 2, uec: 3}", "seeds: {gpro: 2, uec: 3}"), "'seeds' names unknown method 'gpro'"),
        (("seeds: {grpo: 2, uec: 3}", "seeds: [grpo, uec]"), "'seeds' must be a mapping"),
        (("alpha: 0.1", "alpha: 0.1\nsedes: 3"), "unknown field(s) 'sedes'"),
        (("band: hard", "band: hrad"), "primary[0] (P1): 'band' must be one of easy, medium, hard, between"),
        (("band: hard, ", ""), "primary[0] (P1): field 'band' is required for kind accuracy"),
        (("band: hard", "band: hard, k: 4"), "primary[0] (P1): field 'k' applies to kind pass_at_k only"),
        (("band: hard", "band: hard, colour: red"), "field 'colour' is not a field of an endpoint"),
        (("reference: grpo", "reference: dapo"), "'reference' 'dapo' is not among the plan's seeds (grpo, uec)"),
        (("reference: grpo", "reference: uec"), "'method' and 'reference' are both 'uec'"),
        (("direction: positive", "direction: up"), "'direction' must be one of positive, negative"),
        (("id: P1, ", ""), "primary[0]: field 'id' is required"),
        (("kind: accuracy", "kind: accuracies"), "'kind' must be one of accuracy, pass_at_k, greedy, entropy_change"),
    ],
)
def test_a_bad_field_is_refused_by_name(edit, message):
    old, new = edit
    assert old in BASE_BLOCK
    with pytest.raises(PlanError) as error:
        parse_plan(_with(BASE_BLOCK.replace(old, new, 1)), "plan.md")
    assert str(error.value).startswith("plan.md: ")
    assert message in str(error.value)


def test_endpoint_errors_name_the_metric_the_family_and_the_ids():
    entropy = BASE_BLOCK.replace("kind: accuracy, ", "kind: entropy_change, metric: actor/entropy, ").replace(
        "band: hard, ", ""
    )
    with pytest.raises(PlanError, match="'metric' 'actor/entropy' is not kept in a run's compact record"):
        parse_plan(_with(entropy))
    secondary = "\nsecondary:\n  - {{id: {}, kind: {}, method: uec, reference: grpo, band: hard, direction: positive}}"
    twice = BASE_BLOCK + secondary.format("P1", "greedy")
    with pytest.raises(PlanError, match="endpoint id.s. P1 used more than once"):
        parse_plan(_with(twice))
    second = BASE_BLOCK + secondary.format("S1", "pass_at_k")
    with pytest.raises(PlanError, match=r"secondary\[0\] \(S1\): field 'k' is required for kind pass_at_k"):
        parse_plan(_with(second))
    with pytest.raises(PlanError, match="'primary' must list at least one endpoint"):
        parse_plan(_with(BASE_BLOCK.split("primary:")[0] + "primary: []"))


def test_the_block_must_be_there_once_closed_and_yaml():
    with pytest.raises(PlanError, match="expected exactly one ```yaml study-plan block, found 0"):
        plan_block("no plan here\n```yaml\ntask: chains\n```\n", "x.md")
    with pytest.raises(PlanError, match=r"found 2 \(lines 1, 5\)"):
        plan_block(_with("a: 1") + "\n" + _with("b: 2"), "x.md")
    with pytest.raises(PlanError, match="opened on line 1 is never closed"):
        plan_block("```yaml study-plan\ntask: chains\n", "x.md")
    with pytest.raises(PlanError, match="not valid YAML"):
        parse_plan(_with("task: [chains"))
    with pytest.raises(PlanError, match="must be a mapping of"):
        parse_plan(_with("- chains"))
    assert plan_block("~~~~ yaml study-plan\nx: 1\n~~~~\n") == "x: 1"


def test_reading_a_missing_plan_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(PlanError, match=f"no study plan at {tmp_path / 'study-plan.md'}"):
        read_plan(tmp_path / "study-plan.md")
    (tmp_path / "study-plan.md").write_text(PLAN)
    assert read_plan(tmp_path / "study-plan.md").source == str(tmp_path / "study-plan.md")


def test_the_controls_are_methods_the_plan_may_name_but_not_in_the_default_study():
    from uec_lab.study.plan import DEFAULT_METHODS

    for name in ("grpo_matched", "uec_release", "uec_same_temp"):
        assert METHODS[name].preset == name and METHODS[name].group == "control"
        assert name not in DEFAULT_METHODS


def test_runs_matching_the_plan_have_no_deviation():
    plan = parse_plan(_with(BASE_BLOCK))
    assert plan_deviations(plan, {"grpo": {1: 20, 2: 20}, "uec": {1: 20, 2: 20, 3: 20}}, "chains") == []


def test_every_deviation_from_the_plan_is_listed_where_it_is():
    plan = parse_plan(_with(BASE_BLOCK))
    finished = {
        "grpo": {1: 20, 2: 20, 3: 20},  # a seed too many
        "uec": {1: 20, 3: 18},  # seed 2 missing, seed 3 ran other steps
        "dapo": {1: 20, 2: None},  # not in the plan (and seed 2's steps unrecorded)
    }
    assert plan_deviations(plan, finished, "digits") == [
        "task: the runs are on 'digits', the plan is for 'chains'",
        "extra: grpo seed 3 (the plan has seeds 1 to 2)",
        "missing: uec seed 2 (planned 3, finished 2)",
        "extra: dapo seeds 1, 2 (not in the plan)",
        "other steps: uec seed 3 ran 18 steps (planned 20)",
        "other steps: dapo seed 2 ran an unrecorded number of steps (planned 20)",
    ]
    assert plan_deviations(plan, {}) == ["missing: grpo seeds 1, 2 (planned 2, finished 0)",
                                         "missing: uec seeds 1, 2, 3 (planned 3, finished 0)"]  # fmt: skip
