"""uec_recipe/reward/faults.py: a row without ground truth and a grader that raises, on the real entry point and
through verl's own reward manager (``NaiveRewardManager.run_single``, what every reward worker runs per sample)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from uec_recipe import reward
from uec_recipe.reward import (
    GraderError,
    GraderErrorRateExceeded,
    MissingGroundTruthError,
    compute_score,
    compute_score_with_format,
    entry,
    faults,
    registry,
)
from uec_recipe.reward.math_verify_pool import MathVerifyPoolError

MATH12K = "hiyouga/math12k"
FLAKY = "my_lab/flaky"
ROW = {"split": "train", "index": 4817}


def flaky_grader(solution_str, ground_truth, extra_info, grader):
    """Raises on a response containing "boom", like a grader with a bug for one kind of answer."""
    if "boom" in solution_str:
        raise ZeroDivisionError("division by zero in flaky_grader")
    return solution_str.strip() == ground_truth, solution_str.strip()


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    monkeypatch.setattr(registry, "_DESCRIPTIONS", {})
    reward.register_grader(FLAKY, flaky_grader)
    faults.COUNTER.reset()
    yield
    faults.COUNTER.reset()


# --- missing ground truth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gold", [None, "", "  ", float("nan")])
@pytest.mark.parametrize("policy", ["fail", "zero"])
def test_missing_ground_truth_names_the_row_under_either_policy(gold, policy):
    # verl hands ground_truth over as it is; str(None) = "None" would be graded and earn a silent 0.
    with pytest.raises(MissingGroundTruthError) as caught:
        compute_score(MATH12K, "\\boxed{None}", gold, dict(ROW), on_grader_error=policy)
    message = str(caught.value)
    assert f"data_source '{MATH12K}'" in message and "split='train', index=4817" in message
    assert "python -m uec_recipe.data_schema FILE" in message and "silent 0" in message


def test_missing_ground_truth_without_extra_info_says_so():
    with pytest.raises(MissingGroundTruthError, match=r"extra_info \(no split/index\)"):
        compute_score(MATH12K, "\\boxed{1}", None)


def test_a_numeric_ground_truth_is_still_graded():
    assert compute_score(MATH12K, "\\boxed{12}", 12)["acc"] == 1.0


# --- a grader that raises ------------------------------------------------------------------------------------------


def test_fail_is_the_default_and_names_row_grader_and_setting(flaky):
    assert compute_score(FLAKY, "7", "7", dict(ROW)) == {"score": 1.0, "acc": 1.0, "pred": "7"}
    with pytest.raises(GraderError) as caught:
        compute_score(FLAKY, "boom", "7", dict(ROW))
    message = str(caught.value)
    assert "grader flaky_grader registered for 'my_lab/flaky' raised" in message
    assert "split='train', index=4817" in message and "ZeroDivisionError: division by zero" in message
    assert "on_grader_error=zero" in message
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_fail_on_a_built_in_grader(monkeypatch):
    def broken(solution_str, ground_truth):
        raise RecursionError("maximum recursion depth exceeded in mathruler")

    monkeypatch.setattr(entry, "grade_paper", broken)
    with pytest.raises(GraderError, match="the paper grader raised on a sample .*RecursionError"):
        compute_score(MATH12K, "\\boxed{1}", "1", dict(ROW))


def test_zero_scores_0_counts_and_warns(flaky, caplog):
    caplog.set_level(logging.WARNING, logger="uec_recipe.reward")
    good = compute_score(FLAKY, "7", "7", dict(ROW), on_grader_error="zero")
    bad = compute_score(FLAKY, "boom", "7", dict(ROW), on_grader_error="zero")
    # Every sample carries grader_error under this policy: verl stacks reward_extra_info by the first sample's keys.
    assert good == {"score": 1.0, "acc": 1.0, "pred": "7", "grader_error": 0.0}
    assert bad == {"score": 0.0, "acc": 0.0, "pred": "", "grader_error": 1.0}
    assert (faults.COUNTER.errors, faults.COUNTER.scored) == (1, 2)
    (record,) = caplog.records
    assert "flaky_grader" in record.getMessage() and "index=4817" in record.getMessage()
    assert record.exc_info[0] is ZeroDivisionError  # the traceback is in the log


def test_zero_stops_the_run_past_the_error_rate(flaky):
    # Below GRADER_ERROR_MIN_COUNT errors the rate is not judged, even when every sample raises...
    for _ in range(faults.GRADER_ERROR_MIN_COUNT - 1):
        compute_score(FLAKY, "boom", "7", on_grader_error="zero")
    # ...the tenth error out of ten samples is far above 1 %.
    with pytest.raises(GraderErrorRateExceeded, match=r"10 of the 10 samples .* max_grader_error_rate=0.01"):
        compute_score(FLAKY, "boom", "7", dict(ROW), on_grader_error="zero")


def test_zero_tolerates_errors_within_the_rate(flaky):
    for _ in range(990):
        compute_score(FLAKY, "7", "7", on_grader_error="zero")
    for _ in range(10):  # 10 errors in 1000 samples: exactly 1 %, not more
        assert compute_score(FLAKY, "boom", "7", on_grader_error="zero")["grader_error"] == 1.0
    with pytest.raises(GraderErrorRateExceeded, match="11 of the 1001 samples"):
        compute_score(FLAKY, "boom", "7", on_grader_error="zero")


def test_zero_with_a_higher_rate(flaky):
    for _ in range(20):
        compute_score(FLAKY, "boom", "7", on_grader_error="zero", max_grader_error_rate=0.99)
        compute_score(FLAKY, "7", "7", on_grader_error="zero", max_grader_error_rate=0.99)
    assert (faults.COUNTER.errors, faults.COUNTER.scored) == (20, 40)


def test_setup_errors_stop_the_run_under_zero_too(flaky, monkeypatch):
    with pytest.raises(ValueError, match="unknown data_source 'no/such'"):
        compute_score("no/such", "1", "1", on_grader_error="zero")
    with pytest.raises(ValueError, match="extra_info\\['answer_type'\\]"):
        compute_score("AI4Math/MathVista", "\\boxed{1}", "1", {}, on_grader_error="zero")
    reward.register_grader("my_lab/bad_return", lambda *args: 1.0)
    with pytest.raises(TypeError, match="must return \\(correct, extracted answer"):
        compute_score("my_lab/bad_return", "1", "1", on_grader_error="zero")

    def broken_pool(*args):
        raise MathVerifyPoolError("the math-verify worker pool broke twice")

    monkeypatch.setattr(entry, "grade_robust", broken_pool)
    with pytest.raises(MathVerifyPoolError):
        compute_score(MATH12K, "\\boxed{1}", "1", grader="robust", on_grader_error="zero")
    assert faults.COUNTER.errors == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"on_grader_error": "skip"}, r"on_grader_error must be one of \('fail', 'zero'\), got 'skip'"),
        ({"max_grader_error_rate": 1.0}, r"max_grader_error_rate must be a fraction in \[0, 1\), got 1.0"),
        ({"max_grader_error_rate": "0.1"}, "max_grader_error_rate must be a fraction"),
        ({"max_grader_error_rate": True}, "max_grader_error_rate must be a fraction"),
    ],
)
def test_bad_policy_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_score(MATH12K, "\\boxed{1}", "1", **kwargs)


def test_the_format_variant_follows_the_policy(flaky):
    result = compute_score_with_format(FLAKY, "boom", "7", on_grader_error="zero")
    assert result == {"score": 0.0, "acc": 0.0, "pred": "", "grader_error": 1.0, "format": 0.0}


# --- through verl's reward manager ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from uec_lab.demo.build import build_tokenizer

    return build_tokenizer(None)


@pytest.fixture
def event_loop_for_verl():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def manager_for(tokenizer, **reward_kwargs):
    """verl's reward manager as a reward worker builds it for ``pkg://uec_recipe.reward`` and these reward_kwargs."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import load_reward_manager

    custom = {"path": "pkg://uec_recipe.reward", "name": "compute_score", "reward_kwargs": reward_kwargs}
    config = {"reward": {"custom_reward_function": custom, "reward_manager": {"source": "register", "name": "naive"}}}
    return load_reward_manager(OmegaConf.create(config), tokenizer)


def run_single(manager, tokenizer, data_source, response, reward_model, extra_info):
    """One sample as verl's reward loop scores it: parquet-shaped non-tensor fields, the response decoded by the
    manager, compute_score in an executor thread."""
    import torch
    from verl import DataProto

    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    data = DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([[1, 2, 3]]),
            "responses": torch.tensor([response_ids]),
            "attention_mask": torch.ones(1, 3 + len(response_ids), dtype=torch.long),
        },
        non_tensors={
            "data_source": np.array([data_source], dtype=object),
            "reward_model": np.array([reward_model], dtype=object),
            "extra_info": np.array([extra_info], dtype=object),
        },
    )
    return manager.loop.run_until_complete(manager.run_single(data))


def test_verls_reward_loop_stops_on_a_row_without_ground_truth(tokenizer, event_loop_for_verl):
    manager = manager_for(tokenizer, grader="paper")
    ok = run_single(manager, tokenizer, MATH12K, "so \\boxed{12}", {"style": "rule", "ground_truth": "12"}, dict(ROW))
    assert ok["reward_score"] == 1.0
    # The row as a parquet with a null ground truth reaches the manager: reward_model["ground_truth"] is None.
    with pytest.raises(MissingGroundTruthError, match="split='train', index=4817"):
        run_single(manager, tokenizer, MATH12K, "so \\boxed{None}", {"style": "rule", "ground_truth": None}, dict(ROW))


def test_verls_reward_loop_with_on_grader_error_zero(flaky, tokenizer, event_loop_for_verl):
    manager = manager_for(tokenizer, on_grader_error="zero")
    gold = {"style": "rule", "ground_truth": "7"}
    outputs = [run_single(manager, tokenizer, FLAKY, text, gold, dict(ROW)) for text in ("7", "boom", "8")]
    assert [out["reward_score"] for out in outputs] == [1.0, 0.0, 0.0]
    assert [out["reward_extra_info"]["grader_error"] for out in outputs] == [0.0, 1.0, 0.0]
    # RewardLoopManager.compute_rm_score stacks every sample's reward_extra_info by the first sample's keys.
    keys = list(outputs[0]["reward_extra_info"])
    assert all(list(out["reward_extra_info"]) == keys for out in outputs)


def test_verls_reward_loop_fails_by_default(flaky, tokenizer, event_loop_for_verl):
    manager = manager_for(tokenizer)
    with pytest.raises(GraderError, match="flaky_grader registered for 'my_lab/flaky' raised"):
        run_single(manager, tokenizer, FLAKY, "boom", {"style": "rule", "ground_truth": "7"}, dict(ROW))


def test_grader_error_share_counts_the_samples_that_carry_the_count():
    from tensordict import NonTensorData

    from uec_recipe.reward.faults import grader_error_share

    rows = [
        {"reward_extra_info": {"acc": 0.0, "grader_error": 1}},
        NonTensorData({"reward_extra_info": {"acc": 1.0, "grader_error": 0}}),  # as read back from TransferQueue
        {"reward_extra_info": {"acc": 0.0, "grader_error": 0}},
        {"reward_extra_info": {"acc": 1.0, "grader_error": 0}},
    ]
    assert grader_error_share(rows) == 0.25
    # the fail policy (no count on any sample) and a reward that is not the recipe's report nothing
    assert grader_error_share([{"reward_extra_info": {"acc": 1.0}}, None]) is None
    assert grader_error_share([]) is None
