"""Accuracy-only rewards for every dataset of the paper, as one verl custom reward function.

verl loads it with ``reward.custom_reward_function.path=pkg://uec_recipe.reward`` and
``reward.custom_reward_function.name=compute_score`` (``verl.utils.import_utils.load_module`` imports a ``pkg://``
path by module name, so the package works as one), and its reward loop calls
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` for every rollout sample
(``verl/experimental/reward_loop/reward_manager/naive.py``). The file path ``uec_recipe/reward/__init__.py`` works
too: its imports are absolute, so a copy loaded under verl's generated module name shares this package's registry.

The paper scores with binary accuracy and no format bonus (UEC-RL §3), so ``compute_score`` gives 0.0 or 1.0.
``compute_score_with_format`` is the opt-in variant with verl's geo3k bonus, only for comparing against verl's
published Geometry3K numbers.

One module per job:

* ``entry``            verl's entry point ``compute_score`` and the dispatch from a row to its grader;
* ``registry``         the paper's data sources and their answer kinds, ``register_grader`` for datasets of your own,
                       ``describe_grader`` (what evaluation summaries record);
* ``paper``            the authors' scoring (mathruler on the last ``\\boxed{}``, EFRame), the default grader;
* ``robust``           equivalent answers accepted, near misses rejected;
* ``math_verify_pool`` HF math-verify, safe in verl's executor threads;
* ``faults``           a row without ground truth, a grader that raises (docs/faults-data.md).

Selecting the grader. verl 0.9.1 passes ``reward.custom_reward_function.reward_kwargs`` to this function
(``verl/trainer/ppo/reward.py::get_custom_reward_fn``); the recipe's config sets ``grader: paper`` and a training run
overrides it with ``reward.custom_reward_function.reward_kwargs.grader=robust`` (``+reward...`` with verl's own
``main_ppo``, whose config lacks the key); ``reward.reward_kwargs`` is read only by verl's DAPO reward manager and
never reaches ``compute_score``. The same section carries ``on_grader_error`` (``fail`` or ``zero``) and
``max_grader_error_rate``. Evaluation: ``python -m uec_recipe.eval.sample --grader robust``.

Your own dataset. An unknown ``data_source`` is refused (a silent default grader would train on wrong rewards).
``register_grader(data_source, fn)`` adds one; because verl imports the reward module in every reward worker, a
training run points ``reward.custom_reward_function.path`` at a small module of yours that imports this one,
registers on import, and re-exports ``compute_score`` (``examples/own_dataset/``).
"""

from uec_recipe.reward.entry import (
    GEO3K_FORMAT_WEIGHT,
    answer_of,
    answers_equal,
    compute_score,
    compute_score_with_format,
)
from uec_recipe.reward.faults import (
    DEFAULT_MAX_GRADER_ERROR_RATE,
    DEFAULT_ON_GRADER_ERROR,
    ON_GRADER_ERROR,
    GraderError,
    GraderErrorRateExceeded,
    MissingGroundTruthError,
)
from uec_recipe.reward.math_verify_pool import MATH_VERIFY_TIMEOUT_S, MATH_VERIFY_WALL_TIMEOUT_S, math_verify_equal
from uec_recipe.reward.paper import last_boxed
from uec_recipe.reward.registry import (
    ANSWER_KIND_BY_DATA_SOURCE,
    ANSWER_TYPES,
    AUTHORS_CONFIGURED_DATA_SOURCES,
    DEFAULT_GRADER,
    GRADERS,
    UserGrader,
    answer_kind,
    check_grader,
    describe_grader,
    register_grader,
    registered_data_sources,
)
from uec_recipe.reward.robust import choice_equal, normalize_answer, robust_last_boxed, robust_math_equal

__all__ = [
    "ANSWER_KIND_BY_DATA_SOURCE",
    "ANSWER_TYPES",
    "AUTHORS_CONFIGURED_DATA_SOURCES",
    "DEFAULT_GRADER",
    "DEFAULT_MAX_GRADER_ERROR_RATE",
    "DEFAULT_ON_GRADER_ERROR",
    "GEO3K_FORMAT_WEIGHT",
    "GRADERS",
    "MATH_VERIFY_TIMEOUT_S",
    "MATH_VERIFY_WALL_TIMEOUT_S",
    "ON_GRADER_ERROR",
    "GraderError",
    "GraderErrorRateExceeded",
    "MissingGroundTruthError",
    "UserGrader",
    "answer_kind",
    "answer_of",
    "answers_equal",
    "check_grader",
    "choice_equal",
    "compute_score",
    "compute_score_with_format",
    "describe_grader",
    "last_boxed",
    "math_verify_equal",
    "normalize_answer",
    "register_grader",
    "registered_data_sources",
    "robust_last_boxed",
    "robust_math_equal",
]
