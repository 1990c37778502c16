"""The CPU demos' reward file: registers the demo tasks' grader with the recipe and re-exports its ``compute_score``.

A demo run names this module, so the grader is registered in exactly the processes that score (verl imports the
module in every reward worker):

    reward.custom_reward_function.path=pkg://uec_lab.demo.reward
    reward.custom_reward_function.name=compute_score

and an evaluation of the demo passes ``--reward-path pkg://uec_lab.demo.reward`` to ``uec_recipe.eval.sample``.
Every other data source keeps the recipe's graders (the VLM demo uses Geometry3K's data source and the paper
grader), so one run may mix them.

The answer is the exact integer after the last ``####``, read without any parsing library because it runs for every
rollout sample of the quickstart; ``paper`` and ``robust`` score it the same way.
"""

from __future__ import annotations

import re

from uec_lab.demo import chain
from uec_lab.demo.build import DATA_SOURCE
from uec_lab.demo.ladder import BANDS, BETWEEN
from uec_recipe.reward import compute_score, register_grader

# Training rows, and validation rows named by their difficulty band (build.rl_rows; unsolved levels are never rows),
# of both demo tasks: the digit sums and task v2's carry-less chains (uec_lab/demo/chain.py).
DEMO_DATA_SOURCES = tuple(
    f"{source}{suffix}"
    for source in (DATA_SOURCE, chain.DATA_SOURCE)
    for suffix in ("", *(f"/{band}" for band in (*BANDS, BETWEEN)))
)
DESCRIPTION = "exact integer after the last '####' (the CPU demo tasks; the same under both graders)"

_LAST_HASH_INTEGER = re.compile(r"####\s*(-?\d+)(?![\d.])")


def grade_digit_sum(solution_str: str, ground_truth: str, extra_info=None, grader: str = "paper") -> tuple[bool, str]:
    """Whether the integer after the last ``####`` is the gold sum; ``grader`` does not change the verdict."""
    # Only the text after the last "####" counts, so a model cannot list several candidate answers.
    tail = solution_str[solution_str.rfind("####") :] if "####" in solution_str else ""
    match = _LAST_HASH_INTEGER.match(tail)
    if match is None:
        return False, ""
    pred = match.group(1)
    try:
        return int(pred) == int(ground_truth), pred
    except ValueError:
        return False, pred


for _source in DEMO_DATA_SOURCES:
    register_grader(_source, grade_digit_sum, description=DESCRIPTION)

__all__ = ["DEMO_DATA_SOURCES", "compute_score", "grade_digit_sum"]
