"""verl's entry point: ``compute_score`` and its format variant, and the dispatch from a row to its grader.

verl's reward loop calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)``
for every rollout sample, in executor threads of each reward worker. We return a dict so that ``acc`` reaches
``reward_extra_info`` as pure accuracy: with a float return verl would log the reward itself as ``acc``.
"""

from __future__ import annotations

import re

from uec_recipe.reward import faults
from uec_recipe.reward.math_verify_pool import MathVerifyPoolError
from uec_recipe.reward.paper import grade_paper, last_boxed, paper_answers_equal
from uec_recipe.reward.registry import DEFAULT_GRADER, answer_kind, check_grader, registered_grader
from uec_recipe.reward.robust import grade_robust, robust_last_boxed, robust_math_equal

# verl's geo3k format check (verl/utils/reward_score/geo3k.py): reasoning in <think>, answer in \boxed{} after it.
_GEO3K_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
GEO3K_FORMAT_WEIGHT = 0.1


def compute_score(
    data_source,
    solution_str,
    ground_truth,
    extra_info=None,
    grader: str = DEFAULT_GRADER,
    on_grader_error: str = faults.DEFAULT_ON_GRADER_ERROR,
    max_grader_error_rate: float = faults.DEFAULT_MAX_GRADER_ERROR_RATE,
    **kwargs,
) -> dict:
    """verl custom reward: binary accuracy. Returns ``{"score", "acc", "pred"}`` with score == acc in {0.0, 1.0},
    plus ``grader_error`` (1.0 for a sample whose grader raised and that scored 0) under ``on_grader_error="zero"``.

    ``grader`` is "paper" (the authors' scoring, the default) or "robust"; ``on_grader_error`` ("fail", the default,
    or "zero") and ``max_grader_error_rate`` say what a grader that raises does (uec_recipe/reward/faults.py). Other
    keyword arguments verl passes (a reward router address, ...) are ignored.
    """
    check_grader(grader)
    faults.check_policy(on_grader_error, max_grader_error_rate)
    data_source = str(data_source)
    gold = faults.check_ground_truth(data_source, ground_truth, extra_info)
    user_grader = registered_grader(data_source)
    kind = None if user_grader is not None else answer_kind(data_source, extra_info)  # unknown source: always fatal
    try:
        if user_grader is not None:
            result = user_grader(solution_str, gold, extra_info, grader)
        elif grader == "paper":
            result = grade_paper(solution_str, gold)
        else:
            result = grade_robust(kind, solution_str, gold, extra_info)
    except MathVerifyPoolError:
        raise  # the environment is broken, not this sample
    except Exception as error:
        who = (
            f"grader {faults.grader_name(user_grader)} registered for {data_source!r}"
            if user_grader is not None
            else f"{grader} grader"
        )
        if on_grader_error == "fail":
            raise faults.fail_on_grader_error(error, data_source, extra_info, who) from error
        faults.zero_on_grader_error(error, data_source, extra_info, who, max_grader_error_rate)
        return {"score": 0.0, "acc": 0.0, "pred": "", faults.GRADER_ERROR_KEY: 1.0}
    correct, pred = _checked_result(result, data_source) if user_grader is not None else result
    acc = 1.0 if correct else 0.0
    scored = {"score": acc, "acc": acc, "pred": pred}
    if on_grader_error == "zero":
        # Every sample carries the key under this policy: verl stacks reward_extra_info by the first sample's keys.
        faults.record_scored()
        scored[faults.GRADER_ERROR_KEY] = 0.0
    return scored


def compute_score_with_format(
    data_source, solution_str, ground_truth, extra_info=None, grader: str = DEFAULT_GRADER, **kwargs
) -> dict:
    """Opt-in: verl geo3k's shaped reward 0.9*acc + 0.1*format as ``score``; ``acc`` stays pure accuracy."""
    result = compute_score(data_source, solution_str, ground_truth, extra_info, grader=grader, **kwargs)
    fmt = 1.0 if _GEO3K_FORMAT.fullmatch(solution_str) else 0.0
    result["score"] = (1.0 - GEO3K_FORMAT_WEIGHT) * result["acc"] + GEO3K_FORMAT_WEIGHT * fmt
    result["format"] = fmt
    return result


def _checked_result(result, data_source: str) -> tuple[bool, str]:
    # A wrong return type is the grader's contract broken for every sample, so it stops the run under either policy.
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str)):
        raise TypeError(
            f"uec_recipe.reward: the grader registered for {data_source!r} must return (correct, extracted answer "
            f"as str), got {result!r}"
        )
    return bool(result[0]), result[1]


# --- helpers a registered grader can reuse ----------------------------------------------------------------------------


def answer_of(solution_str: str, grader: str = DEFAULT_GRADER) -> str | None:
    """The boxed answer as ``grader`` extracts it: the last ``\\boxed{}`` (paper) or the last non-empty box (robust)."""
    check_grader(grader)
    return last_boxed(solution_str) if grader == "paper" else robust_last_boxed(solution_str)


def answers_equal(gold: str, pred: str, grader: str = DEFAULT_GRADER) -> bool:
    """Whether ``pred`` is the free-form math answer ``gold`` under ``grader`` (mathruler, or robust_math_equal)."""
    check_grader(grader)
    return paper_answers_equal(gold, pred) if grader == "paper" else robust_math_equal(gold, pred)
