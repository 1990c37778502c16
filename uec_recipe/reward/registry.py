"""Which grader scores a row: the paper's data sources by answer kind, and the graders a reward file registers.

The two built-in graders are chosen by one keyword, ``grader="paper"`` (the authors' scoring, the default) or
``grader="robust"``. The kind of answer a row holds ("math", "gsm8k", "choice") and the grader together decide how it
is scored. A data source that is neither the paper's nor registered is refused: a silent default grader would train
on wrong rewards.

The registry is this module's, so every reward file that imports ``uec_recipe.reward`` shares it, including
``uec_recipe/reward/__init__.py`` itself when verl loads it by file path under a generated module name (its imports
are absolute, so they reach this module).
"""

from __future__ import annotations

from collections.abc import Callable

GRADERS = ("paper", "robust")
DEFAULT_GRADER = "paper"

# What kind of answer each of the paper's data sources (the hub id each converter in data_prep reads) holds.
ANSWER_KIND_BY_DATA_SOURCE: dict[str, str] = {
    # training
    "hiyouga/geometry3k": "math",
    "BytedTsinghua-SIA/DAPO-Math-17k": "math",
    "hiyouga/math12k": "math",
    # text evaluation
    "HuggingFaceH4/aime_2024": "math",
    "yentinglin/aime_2025": "math",
    "math-ai/amc23": "math",
    "HuggingFaceH4/MATH-500": "math",
    "math-ai/minervamath": "math",
    "Hothan/OlympiadBench": "math",
    "openai/gsm8k": "gsm8k",
    "cais/mmlu": "choice",
    # vision evaluation (Geometry3K test shares the training source id)
    "AI4Math/MathVista": "mixed",
    "AI4Math/MathVerse": "mixed",
    "MathLLMs/MathVision": "mixed",
    "We-Math/We-Math": "mixed",
}
# The benchmarks the authors' released configuration itself runs the scoring function on (EFRame
# examples/config.yaml: hiyouga/math12k train/test; examples/qwen2.5-vl-7b.sh: hiyouga/geometry3k train/test).
AUTHORS_CONFIGURED_DATA_SOURCES = frozenset({"hiyouga/geometry3k", "hiyouga/math12k"})

# Mixed benchmarks (MathVista, MathVerse, MATH-Vision, We-Math) hold free-form and multiple-choice questions; the
# converters in data_prep write extra_info["answer_type"] for every row, and that decides the kind of those rows.
ANSWER_TYPES = ("multiple_choice", "free_form")

# A user grader: (solution_str, ground_truth, extra_info, grader) -> (correct, extracted answer).
UserGrader = Callable[[str, str, "dict | None", str], "tuple[bool, str]"]
_REGISTERED: dict[str, UserGrader] = {}
_DESCRIPTIONS: dict[str, str] = {}


def check_grader(grader: str) -> None:
    if grader not in GRADERS:
        raise ValueError(
            f"uec_recipe.reward: grader must be one of {GRADERS}, got {grader!r}. In training set it with "
            "reward.custom_reward_function.reward_kwargs.grader=...; in evaluation with --grader."
        )


def register_grader(data_source: str, fn: UserGrader, description: str | None = None) -> None:
    """Score rows whose ``data_source`` is ``data_source`` with ``fn(solution_str, ground_truth, extra_info, grader)``,
    which returns ``(correct: bool, extracted answer: str)``; ``grader`` is "paper" or "robust", and ``fn`` may
    ignore it or follow it (``answer_of`` and ``answers_equal`` give the built-in behaviour of each).
    ``description``, when given, is what evaluation summaries record beside the function's name.

    Registering a data source again replaces the earlier function: verl loads the reward file once per reward worker,
    sometimes several times in one process. The paper's own data sources cannot be replaced.
    """
    if not isinstance(data_source, str) or not data_source.strip():
        raise ValueError(f"register_grader: data_source must be a non-empty string, got {data_source!r}")
    if data_source in ANSWER_KIND_BY_DATA_SOURCE:
        raise ValueError(
            f"register_grader: {data_source!r} is one of the paper's data sources, graded by uec_recipe.reward "
            "itself; give your dataset its own data_source name."
        )
    if not callable(fn):
        raise TypeError(f"register_grader: fn for {data_source!r} must be callable, got {type(fn).__name__}")
    _REGISTERED[data_source] = fn
    if description is None:
        _DESCRIPTIONS.pop(data_source, None)
    else:
        _DESCRIPTIONS[data_source] = str(description)


def registered_data_sources() -> list[str]:
    return sorted(_REGISTERED)


def registered_grader(data_source: str) -> UserGrader | None:
    return _REGISTERED.get(data_source)


def answer_kind(data_source: str, extra_info: dict | None = None) -> str:
    """The answer kind of one of the paper's rows: "math", "choice" or "gsm8k"."""
    kind = ANSWER_KIND_BY_DATA_SOURCE.get(data_source)
    if kind is None:
        raise ValueError(
            f"uec_recipe.reward: unknown data_source {data_source!r}; known: {sorted(ANSWER_KIND_BY_DATA_SOURCE)}"
            + (f", registered: {registered_data_sources()}" if _REGISTERED else "")
            + ". Prepare the paper's data with `python -m data_prep.prepare`; for a dataset of your own, register a "
            "grader with uec_recipe.reward.register_grader in the reward file the run names "
            "(reward.custom_reward_function.path; examples/own_dataset/)."
        )
    if kind != "mixed":
        return kind
    answer_type = (extra_info or {}).get("answer_type")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(
            f"uec_recipe.reward: data_source {data_source!r} mixes multiple-choice and free-form questions, so "
            f"extra_info['answer_type'] must be one of {ANSWER_TYPES}, got {answer_type!r}."
        )
    return "choice" if answer_type == "multiple_choice" else "math"


def describe_grader(data_source: str, grader: str) -> str:
    """One line saying how ``grader`` scores ``data_source``; evaluation summaries record it beside the numbers."""
    check_grader(grader)
    if data_source in _REGISTERED:
        # The file, not the module: verl loads a reward file under a generated module name.
        fn = _REGISTERED[data_source]
        code = getattr(fn, "__code__", None)
        where = code.co_filename if code is not None else getattr(fn, "__module__", "?")
        described = f"registered grader {getattr(fn, '__qualname__', repr(fn))} from {where}"
        note = _DESCRIPTIONS.get(data_source)
        return described if note is None else f"{described}: {note}"
    kind = ANSWER_KIND_BY_DATA_SOURCE.get(data_source)
    if kind is None:
        answer_kind(data_source)  # raises the unknown-data-source error
    if grader == "paper":
        where = (
            "a benchmark the authors' released configuration scores"
            if data_source in AUTHORS_CONFIGURED_DATA_SOURCES
            else "the authors' scoring function applied to a benchmark their released code does not configure"
        )
        return (
            "paper: mathruler grade_answer(extract_boxed_content(response), gold) "
            f"(EFRame examples/score_function/math.py); {where}"
        )
    return {
        "math": "robust: last non-empty box, units/percent/degrees/'x =' removed, math-verify (gold first)",
        "gsm8k": "robust: last '####' or box, units/percent/degrees/'x =' removed, math-verify (gold first)",
        "choice": "robust: option letter (bare, (X), \\text{X}) or the gold option's exact text",
        "mixed": "robust: per extra_info.answer_type, option letter/text or math-verify after normalisation",
    }[kind]
