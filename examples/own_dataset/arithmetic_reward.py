"""The reward file for the worksheet dataset of this example: registers its grader and re-exports compute_score.

A training run names this file instead of the recipe's ``pkg://uec_recipe.reward``:

    reward.custom_reward_function.path=examples/own_dataset/arithmetic_reward.py
    reward.custom_reward_function.name=compute_score

verl loads the file by path in every reward worker (``verl.utils.import_utils.load_extern_object``) and calls
``compute_score`` for each sample. Importing ``uec_recipe.reward`` and registering here means the grader is in place
in exactly the processes that score, and every other data source - the paper's datasets - keeps the project's
graders, so one run may mix them. ``python -m uec_recipe.eval.sample --reward-path <this file>`` scores
an evaluation the same way.
"""

from __future__ import annotations

import re

from uec_recipe import reward
from uec_recipe.reward import compute_score, compute_score_with_format  # noqa: F401  (what verl looks up by name)

DATA_SOURCE = "my_lab/worksheet_sums"  # what prepare.py writes into every row's data_source

# A response gives its answer after "####" (the demo policy's habit) or in \boxed{} (the paper's template).
_AFTER_HASHES = re.compile(r"####\s*(\S+)")


def grade_worksheet(solution_str: str, ground_truth: str, extra_info: dict | None, grader: str) -> tuple[bool, str]:
    """Whether the response's final answer is the worksheet's whole-number answer.

    The last of "#### N" and a boxed answer counts. ``grader`` ("paper" or "robust", from
    reward.custom_reward_function.reward_kwargs.grader or eval's --grader) picks how the box is found and how the
    values are compared, by the same rules as the paper's free-form math.
    """
    hashes = list(_AFTER_HASHES.finditer(solution_str))
    box_position = solution_str.rfind("\\boxed")
    if hashes and hashes[-1].start() > box_position:
        pred = hashes[-1].group(1)
    else:
        pred = reward.answer_of(solution_str, grader) or ""
    return bool(pred) and reward.answers_equal(ground_truth, pred, grader), pred


reward.register_grader(DATA_SOURCE, grade_worksheet)
