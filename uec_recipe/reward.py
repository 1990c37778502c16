"""Accuracy-only rewards for every dataset uec-rl trains and evaluates on, as one verl custom reward function.

verl loads it with ``reward.custom_reward_function.path=<this file>`` (or ``pkg://uec_recipe.reward``) and
``reward.custom_reward_function.name=compute_score``, and its reward loop calls
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` for every rollout sample
(``verl/experimental/reward_loop/reward_manager/naive.py``). We return a dict so that ``acc`` reaches
``reward_extra_info`` as pure accuracy: with a float return verl would log the reward itself as ``acc``.

The paper scores with binary accuracy and no format bonus (UEC-RL §3), so ``compute_score`` gives 0.0 or 1.0.
``compute_score_with_format`` is the opt-in variant with verl's geo3k bonus, only for comparing against verl's
published Geometry3K numbers.

Two graders, chosen by one keyword, ``grader="paper"`` (default) or ``grader="robust"``:

* ``paper`` reproduces the authors' scoring, so that a reproduction is comparable with the paper's tables. Their
  EasyR1-based code (github.com/597358816/EFRame) scores with ``examples/score_function/math.py:math_compute_score``
  (selected in ``examples/config.yaml``, ``worker.reward.score_function``): ``mathruler.grader.extract_boxed_content``
  on the whole response (the last ``\\boxed{``, balanced braces, or the string "None"), then
  ``mathruler.grader.grade_answer(extracted, ground_truth)``, accuracy only. The function does not look at the
  benchmark, so every row their validation loop sees is scored this way; their released configuration runs it on
  Geometry3K (``examples/qwen2.5-vl-7b.sh``) and MATH (``hiyouga/math12k``, ``examples/config.yaml``). For every
  other benchmark (the text and vision evaluation sets, DAPO-Math-17k, multiple-choice questions whose gold is the
  option letter) ``paper`` applies the same function: what their pipeline does to any row, although their code
  does not name those benchmarks. ``describe_grader`` says which case a data source is in, and evaluation
  summaries record it.
* ``robust`` is the most correct verdict we can give: an equivalent answer is accepted, a near miss rejected. It
  finds the answer in ``\\boxed{x}``, ``\\boxed x`` or ``\\fbox{x}`` (the last non-empty one, so an empty
  ``\\boxed{}`` echoed from the instruction does not hide the answer), removes what does not change the value
  (degree signs including the Unicode ``°``, percent signs, trailing units in ``\\text{}`` or words, a ``$`` currency
  sign, a single ``lhs =`` or ``\\approx`` in front when the gold is not an equation, a trailing period), reads
  ``7.353e14`` as 7.353·10^14, then compares plain decimals exactly and everything else with HF math-verify
  (``verify(gold, pred)``, gold first). GSM8K accepts ``#### N`` as well as a box and is graded the same way.
  Multiple-choice rows accept only the option letter (bare, in parentheses, in ``\\text{}``) or, when the converter
  stored the options in ``extra_info["options"]``, the exact text of the gold option.

Both graders score the CPU demo task (``uec_demo/digit_sum``) the same way: the exact integer after the last
``####``, without any parsing library, because it runs for every rollout sample of the quickstart.

Selecting the grader. verl 0.9.1 passes ``reward.custom_reward_function.reward_kwargs`` to this function
(``verl/trainer/ppo/reward.py::get_custom_reward_fn``); the recipe's config sets it to ``paper`` and a training run
overrides it with ``reward.custom_reward_function.reward_kwargs.grader=robust`` (``+reward...`` with verl's own
``main_ppo``, whose config lacks the key); ``reward.reward_kwargs`` is read only by verl's DAPO reward manager and
never reaches ``compute_score``. Evaluation: ``python -m uec_recipe.eval.sample --grader robust``.

Your own dataset. An unknown ``data_source`` is refused (a silent default grader would train on wrong rewards).
``register_grader(data_source, fn)`` adds one; because verl loads the reward file by path in every reward worker, a
training run points ``reward.custom_reward_function.path`` at a small module of yours that imports this one,
registers, and re-exports ``compute_score`` (``examples/own_dataset/``); the registry is this module's, so every
reward file that imports ``uec_recipe.reward`` shares it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from concurrent.futures.process import BrokenProcessPool
from decimal import Decimal, InvalidOperation

GRADERS = ("paper", "robust")
DEFAULT_GRADER = "paper"

# What kind of answer each of the paper's data sources (the hub id each converter in data_prep reads) holds; the
# kind and the grader together decide how a row is scored (see _grade).
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
    # the CPU demo task (uec_recipe/demo): training rows, and validation rows named by their difficulty band
    "uec_demo/digit_sum": "digit_sum",
    **{f"uec_demo/digit_sum/{band}": "digit_sum" for band in ("easy", "medium", "hard", "between")},
}
# The benchmarks the authors' released configuration itself runs the scoring function on (EFRame
# examples/config.yaml: hiyouga/math12k train/test; examples/qwen2.5-vl-7b.sh: hiyouga/geometry3k train/test).
AUTHORS_CONFIGURED_DATA_SOURCES = frozenset({"hiyouga/geometry3k", "hiyouga/math12k"})

# Mixed benchmarks (MathVista, MathVerse, MATH-Vision, We-Math) hold free-form and multiple-choice questions; the
# converters in data_prep write extra_info["answer_type"] for every row, and that decides the kind of those rows.
ANSWER_TYPES = ("multiple_choice", "free_form")

# verl's geo3k format check (verl/utils/reward_score/geo3k.py): reasoning in <think>, answer in \boxed{} after it.
_GEO3K_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
GEO3K_FORMAT_WEIGHT = 0.1

# math-verify budgets: per parse / per comparison inside math-verify, and a wall-clock bound on a worker call.
MATH_VERIFY_TIMEOUT_S = 5
MATH_VERIFY_WALL_TIMEOUT_S = 30.0

# A user grader: (solution_str, ground_truth, extra_info, grader) -> (correct, extracted answer).
UserGrader = Callable[[str, str, "dict | None", str], "tuple[bool, str]"]
_REGISTERED: dict[str, UserGrader] = {}


def compute_score(
    data_source, solution_str, ground_truth, extra_info=None, grader: str = DEFAULT_GRADER, **kwargs
) -> dict:
    """verl custom reward: binary accuracy. Returns ``{"score", "acc", "pred"}`` with score == acc in {0.0, 1.0}.

    ``grader`` is "paper" (the authors' scoring, the default) or "robust"; other keyword arguments verl passes
    (a reward router address, ...) are ignored.
    """
    check_grader(grader)
    correct, pred = _grade(str(data_source), solution_str, str(ground_truth), extra_info, grader)
    acc = 1.0 if correct else 0.0
    return {"score": acc, "acc": acc, "pred": pred}


def compute_score_with_format(
    data_source, solution_str, ground_truth, extra_info=None, grader: str = DEFAULT_GRADER, **kwargs
) -> dict:
    """Opt-in: verl geo3k's shaped reward 0.9*acc + 0.1*format as ``score``; ``acc`` stays pure accuracy."""
    result = compute_score(data_source, solution_str, ground_truth, extra_info, grader=grader)
    fmt = 1.0 if _GEO3K_FORMAT.fullmatch(solution_str) else 0.0
    result["score"] = (1.0 - GEO3K_FORMAT_WEIGHT) * result["acc"] + GEO3K_FORMAT_WEIGHT * fmt
    result["format"] = fmt
    return result


def check_grader(grader: str) -> None:
    if grader not in GRADERS:
        raise ValueError(
            f"uec_recipe.reward: grader must be one of {GRADERS}, got {grader!r}. In training set it with "
            "reward.custom_reward_function.reward_kwargs.grader=...; in evaluation with --grader."
        )


# --- which grader scores a row ----------------------------------------------------------------------------------------


def register_grader(data_source: str, fn: UserGrader) -> None:
    """Score rows whose ``data_source`` is ``data_source`` with ``fn(solution_str, ground_truth, extra_info, grader)``,
    which returns ``(correct: bool, extracted answer: str)``; ``grader`` is "paper" or "robust", and ``fn`` may
    ignore it or follow it (``answer_of`` and ``answers_equal`` give the built-in behaviour of each).

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


def registered_data_sources() -> list[str]:
    return sorted(_REGISTERED)


def answer_kind(data_source: str, extra_info: dict | None = None) -> str:
    """The answer kind of a built-in data source's row: "math", "choice", "gsm8k" or "digit_sum"."""
    kind = ANSWER_KIND_BY_DATA_SOURCE.get(data_source)
    if kind is None:
        raise ValueError(
            f"uec_recipe.reward: unknown data_source {data_source!r}; known: {sorted(ANSWER_KIND_BY_DATA_SOURCE)}"
            + (f", registered: {registered_data_sources()}" if _REGISTERED else "")
            + ". Prepare the paper's data with `python -m data_prep.prepare`; for a dataset of your own, register a "
            "grader with uec_recipe.reward.register_grader (examples/own_dataset/)."
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
        return f"registered grader {getattr(fn, '__qualname__', repr(fn))} from {where}"
    kind = ANSWER_KIND_BY_DATA_SOURCE.get(data_source)
    if kind is None:
        answer_kind(data_source)  # raises the unknown-data-source error
    if kind == "digit_sum":
        return "exact integer after the last '####' (the CPU demo task; the same under both graders)"
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


def _grade(data_source, solution_str, ground_truth, extra_info, grader) -> tuple[bool, str]:
    user_grader = _REGISTERED.get(data_source)
    if user_grader is not None:
        return _checked_user_result(user_grader(solution_str, ground_truth, extra_info, grader), data_source)
    kind = answer_kind(data_source, extra_info)
    if kind == "digit_sum":
        return _grade_digit_sum(solution_str, ground_truth)
    if grader == "paper":
        return _grade_paper(solution_str, ground_truth)
    if kind == "gsm8k":
        pred = _gsm8k_answer(solution_str)
        return pred is not None and robust_math_equal(ground_truth, pred), pred or ""
    pred = robust_last_boxed(solution_str)
    if pred is None:
        return False, ""
    if kind == "choice":
        return choice_equal(pred, ground_truth, _options(extra_info)), pred
    return robust_math_equal(ground_truth, pred), pred


def _checked_user_result(result, data_source: str) -> tuple[bool, str]:
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
    if grader == "paper":
        from mathruler.grader import grade_answer  # lazy: the demo path must not pay for sympy

        return bool(grade_answer(pred, gold))
    return robust_math_equal(gold, pred)


# --- paper: the authors' scoring --------------------------------------------------------------------------------------


def _grade_paper(solution_str: str, ground_truth: str) -> tuple[bool, str]:
    # EFRame examples/score_function/math.py::math_acc_reward, call for call: mathruler's own extraction (which
    # yields the string "None" when there is no closed box, and that string is then graded like any answer) and
    # grade_answer(answer, ground_truth). Only the reported pred differs: "" instead of "None" for no box.
    from mathruler.grader import extract_boxed_content, grade_answer  # lazy: the demo path must not pay for sympy

    extracted = extract_boxed_content(solution_str)
    pred = last_boxed(solution_str)
    return bool(grade_answer(extracted, ground_truth)), "" if pred is None else pred


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None when there is none or it is unclosed; the
    same string as mathruler's extract_boxed_content whenever that finds a box."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    body_start = start + len("\\boxed{")
    end = _closing_brace(text, body_start)
    return None if end is None else text[body_start:end].strip()


def _closing_brace(text: str, body_start: int) -> int | None:
    depth = 0
    for i in range(body_start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
    return None


# --- robust: extraction -----------------------------------------------------------------------------------------------

# \boxed{x}, \boxed {x}, \fbox{x}, and the brace-less \boxed x that models write (TeX boxes one token; a model
# writing "\boxed 34" means 34, so we take the run up to white space or the closing $).
_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")


def robust_last_boxed(text: str) -> str | None:
    """The last non-empty boxed answer in any of the forms above, or None."""
    answers = []
    for match in _BOX_START.finditer(text):
        position = match.end()
        if text.startswith("{", position):
            end = _closing_brace(text, position + 1)
            if end is not None:
                answers.append(text[position + 1 : end].strip())
        else:
            bare = re.match(r"[^\s$\\{}]+", text[position:])
            if bare:
                answers.append(bare.group(0))
    answers = [answer for answer in answers if _unwrap_boxes(answer)]
    return answers[-1] if answers else None


def _unwrap_boxes(answer: str) -> str:
    answer = answer.strip()
    while True:
        match = re.fullmatch(r"\\(?:boxed|fbox)\s*\{(.*)\}", answer, flags=re.DOTALL)
        if match is None or _closing_brace(answer, answer.index("{") + 1) != len(answer) - 1:
            return answer
        answer = match.group(1).strip()


_HASH_LINE = re.compile(r"####[ \t]*([^\n]*)")


def _gsm8k_answer(solution_str: str) -> str | None:
    # The prompt asks for \boxed{} (paper's template) while GSM8K's own format is "#### N": whichever comes last.
    hash_pos = solution_str.rfind("####")
    boxed = robust_last_boxed(solution_str)
    box_pos = max(solution_str.rfind("\\boxed"), solution_str.rfind("\\fbox"))
    if hash_pos > box_pos or (hash_pos >= 0 and boxed is None):
        answer = _HASH_LINE.match(solution_str, hash_pos).group(1).strip()
        return answer or None
    return boxed


# --- robust: normalisation and comparison -----------------------------------------------------------------------------

_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_UNICODE = {"−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "π": "\\pi ", "∞": "\\infty ", "≈": "\\approx "}
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°|\\text\{\s*°\s*\}")
_DEGREE_WORDS = re.compile(r"(?<=[\d}])\s*(?:\\text\{\s*)?degrees?\b\}?", re.IGNORECASE)
_PERCENT = re.compile(r"\\%|%|\\text\{\s*percent\s*\}|(?<=\d)\s*percent\b", re.IGNORECASE)
# 7.353e14, 1.2E-3: only a decimal mantissa directly followed by e/E and an integer exponent, nothing around it.
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")
_TIMES_TEN = re.compile(r"(\d)\s*[xX*]\s*10\s*\^")
# Trailing units: "\text{ dollars}", "\mathrm{cm}^2", "\mbox{ km/h}" after something that is not itself text. In
# math-mode roman a single letter is a constant, not a unit (\mathrm{i}, \mathrm{e}), so \mathrm needs two letters.
_TEXT_UNIT = re.compile(
    r"(?:\\[,;:! ]|\s)*"
    r"(?:\\(?:text|textrm|mbox)\s*\{\s*[A-Za-z][A-Za-z .\-/]*\}"
    r"|\\(?:mathrm|operatorname)\s*\{\s*[A-Za-z]{2}[A-Za-z .\-/]*\})"
    r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
# "18 dollars", "6 cm", "5 meters per second": a plain number, a space, then only words. The first word has two or
# more letters, so that "5 x", "5x" or "3i" (a variable, an imaginary number) keep their letter and stay wrong for 5.
_NUMBER_WORDS = re.compile(r"([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+[A-Za-z]{2}[A-Za-z\s/.\-]*(?:\^\s*\{?[23]\}?)?")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ROMAN_LETTER = re.compile(
    r"\\(?:mathrm|operatorname)\s*\{\s*([A-Za-z])\s*\}|\\(?:text|textrm|mbox)\s*\{\s*([ie])\s*\}"
)
# One "=" (not part of <=, >=, !=, ==) or \approx: the answer is what follows it.
_RELATION = re.compile(r"(?<![<>!=:\\])=(?!=)|\\approx")


def normalize_answer(answer: str, gold_is_relation: bool = False) -> str:
    """An answer with what does not change its value removed (see the module docstring); used on gold and pred."""
    text = _unwrap_boxes(answer.strip())
    for opening, closing in _MATH_DELIMITERS:
        if text.startswith(opening) and text.endswith(closing) and len(text) > len(opening) + len(closing):
            text = text[len(opening) : -len(closing)].strip()
            break
    for char, replacement in _UNICODE.items():
        text = text.replace(char, replacement)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"(?<=\d)\\[,!;:](?=\d)", "", text)  # 1\,000 -> 1000
    # math-verify drops \mathrm{...} and \text{...} as units, which would read 2+3\mathrm{i} as 5: a one-letter
    # \mathrm{x}, and an i or e in \text{}, is a symbol (the imaginary unit, Euler's number), so it becomes the letter.
    text = _ROMAN_LETTER.sub(lambda match: match.group(1) or match.group(2), text)
    if not gold_is_relation:
        parts = _RELATION.split(text)
        if len(parts) == 2 and parts[1].strip():
            text = parts[1].strip()
    text = _DEGREES.sub("", text)
    text = _DEGREE_WORDS.sub("", text)
    text = _PERCENT.sub("", text)
    text = text.replace("\\$", "")
    text = re.sub(r"^\$(?=\s*[\d.])", "", text.strip())
    text = _SCIENTIFIC.sub(r"\1\\times 10^{\2}", text)
    text = _TIMES_TEN.sub(r"\1\\times 10^", text)
    without_unit = _TEXT_UNIT.sub("", text).strip()
    if without_unit and not without_unit.endswith(("=", "\\times", "\\cdot")):
        text = without_unit
    number_words = _NUMBER_WORDS.fullmatch(text.strip())
    if number_words:
        text = number_words.group(1)
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(".").strip()


def _as_decimal(text: str) -> Decimal | None:
    text = text.replace(" ", "")
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def robust_math_equal(gold: str, pred: str) -> bool:
    """Whether ``pred`` has the value of ``gold``: both normalised, plain decimals compared exactly (5.80 = 5.8, but
    5.83 != 5.8), anything else by math-verify with gold parsed first."""
    gold_is_relation = len(_RELATION.split(gold)) > 1
    gold_text = normalize_answer(gold, gold_is_relation)
    pred_text = normalize_answer(pred, gold_is_relation)
    if not gold_text or not pred_text:
        return False
    if gold_text.replace(" ", "") == pred_text.replace(" ", ""):
        return True
    gold_number, pred_number = _as_decimal(gold_text), _as_decimal(pred_text)
    if gold_number is not None and pred_number is not None:
        return gold_number == pred_number
    return math_verify_equal(gold_text, pred_text)


# --- robust: multiple choice ------------------------------------------------------------------------------------------

_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LETTER = re.compile(r"\(?([A-Za-z])\)?\.?")
_LETTER_AND_TEXT = re.compile(r"\(?([A-Za-z])(?:\)|\.|:|\)\.)\s*(.+)", re.DOTALL)


def _plain(text: str) -> str:
    text = _unwrap_boxes(text)
    for _ in range(3):  # nested wrappers such as \textbf{\text{C}}
        text = _WRAPPER.sub(r"\1", text)
    return " ".join(text.replace("$", "").split())


def _options(extra_info) -> list[str] | None:
    options = (extra_info or {}).get("options") if isinstance(extra_info, dict) else None
    if options is None:
        return None
    options = [str(option) for option in list(options)]
    return options or None


def choice_equal(pred: str, gold_letter: str, options: list[str] | None = None) -> bool:
    """Whether a boxed answer names the gold option: its letter alone (``C``, ``(C)``, ``C.``, ``\\text{C}``, any
    case), or, with the options known, the gold option's exact text, alone or after its letter (``C. 4``).
    Anything else - ``a = 5``, ``a triangle``, ``A, C`` - names no single option and is wrong."""
    gold = _plain(gold_letter).strip("()").upper()
    answer = _plain(pred)
    letter = _LETTER.fullmatch(answer)
    if letter:
        return letter.group(1).upper() == gold
    if not options or len(gold) != 1 or not "A" <= gold <= "Z" or ord(gold) - ord("A") >= len(options):
        return False
    gold_text = _plain(options[ord(gold) - ord("A")])
    if answer == gold_text:
        return True
    with_letter = _LETTER_AND_TEXT.fullmatch(answer)
    return bool(with_letter) and with_letter.group(1).upper() == gold and with_letter.group(2).strip() == gold_text


# --- the CPU demo task ------------------------------------------------------------------------------------------------

_LAST_HASH_INTEGER = re.compile(r"####\s*(-?\d+)(?![\d.])")


def _grade_digit_sum(solution_str: str, ground_truth: str) -> tuple[bool, str]:
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


# --- math-verify, safe outside the main thread ------------------------------------------------------------------------
# math-verify bounds parse/verify with signal.alarm, which only works in the main thread, and verl's reward loop runs
# compute_score in executor threads. Off the main thread we therefore run math-verify's own public parse/verify in a
# small spawned process pool, where each call runs in that process's main thread with its alarm-based timeouts (the
# approach of verl/utils/reward_score/math_verify.py). The pool is submitted math-verify's functions, not ours, so it
# works even when verl loaded this file by path under a module name a child process could not import.

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
MATH_VERIFY_WORKERS = 2


def _math_verify_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            import multiprocessing

            _pool = ProcessPoolExecutor(MATH_VERIFY_WORKERS, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _reset_math_verify_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def math_verify_equal(gold: str, pred: str) -> bool:
    """math-verify equivalence of boxed answer strings, gold parsed first; False on timeout or parse failure."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # The same extraction targets as verl's math_verify scorer: gold is LaTeX; a prediction may also be plain text.
    gold_args = ("\\boxed{" + gold + "}", (LatexExtractionConfig(),))
    pred_args = ("\\boxed{" + pred + "}", (ExprExtractionConfig(), LatexExtractionConfig()))
    if threading.current_thread() is threading.main_thread():
        gold_parsed = parse(*gold_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        pred_parsed = parse(*pred_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        return bool(gold_parsed and pred_parsed) and verify(
            gold_parsed, pred_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT_S
        )
    for attempt in range(2):
        try:
            pool = _math_verify_pool()
            gold_future = pool.submit(parse, *gold_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
            pred_future = pool.submit(parse, *pred_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
            gold_parsed = gold_future.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S)
            pred_parsed = pred_future.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S)
            if not (gold_parsed and pred_parsed):
                return False
            same = pool.submit(verify, gold_parsed, pred_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT_S)
            return bool(same.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S))
        except FuturesTimeoutError:
            # A worker stuck past math-verify's own alarm: score 0, as verl's scorer does, and keep training.
            return False
        except BrokenProcessPool as error:
            # A worker died (killed for memory, or could not start). Retry once on a fresh pool; a second failure is
            # a broken environment, and scoring every sample 0 would silently poison training, so raise.
            _reset_math_verify_pool()
            if attempt == 1:
                raise RuntimeError(
                    "uec_recipe.reward: the math-verify worker pool broke twice; a spawned worker could not start "
                    "or was killed. Is the main module import-safe (`if __name__ == '__main__':`)?"
                ) from error
    raise AssertionError("unreachable")
