"""Accuracy-only rewards for every dataset uec-rl trains and evaluates on, as one verl custom reward function.

verl loads it with ``reward.custom_reward_function.path=<this file> reward.custom_reward_function.name=compute_score``
and its reward loop calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` for every
rollout sample (``verl/experimental/reward_loop/reward_manager/naive.py``). We return a dict so that ``acc`` reaches
``reward_extra_info`` as pure accuracy: with a float return verl would log the reward itself as ``acc``.

The paper scores with binary accuracy and no format bonus (UEC-RL §3; see docs on answer checking), so
``compute_score`` gives 0.0 or 1.0. ``compute_score_with_format`` is the opt-in variant with verl's geo3k
bonus, only for comparing against verl's published Geometry3K numbers.

Graders, chosen per data source in ``GRADER_BY_DATA_SOURCE``:
  * ``mathruler``   - ``mathruler.grader.grade_answer`` on the last ``\\boxed{}``. Used for the vision benchmarks
                      because the paper (EasyR1-based), EasyR1 and verl's geo3k score Geometry3K this way, so our
                      Geometry3K accuracy is comparable with the published anchors.
  * ``math_verify`` - HF math-verify on the last ``\\boxed{}``, gold parsed first (``verify(gold, pred)``; the
                      argument order matters). Used for the text math sets, whose answers include intervals, sets,
                      equations and radicals that math-verify's LaTeX-to-sympy parsing handles more robustly.
  * ``choice``      - the option letter in the last ``\\boxed{}`` (MMLU, multiple-choice vision questions).
  * ``gsm8k``       - the number after the last ``####`` or in the last ``\\boxed{}``, compared as a number.
  * ``digit_sum``   - the CPU demo task: exact integer after the last ``####``; no parsing library, it is hot.

Mixed benchmarks (MathVista, MathVerse, MATH-Vision, We-Math) hold free-form and multiple-choice questions; the
converters in ``data_prep`` write ``extra_info["answer_type"]`` ("multiple_choice" or "free_form") for every row,
and that decides the grader for those sources.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from concurrent.futures.process import BrokenProcessPool
from decimal import Decimal, InvalidOperation

# The paper's data sources (the hub id each converter in data_prep reads) -> grader.
GRADER_BY_DATA_SOURCE: dict[str, str] = {
    # training
    "hiyouga/geometry3k": "mathruler",
    "BytedTsinghua-SIA/DAPO-Math-17k": "math_verify",
    "hiyouga/math12k": "math_verify",
    # text evaluation
    "HuggingFaceH4/aime_2024": "math_verify",
    "yentinglin/aime_2025": "math_verify",
    "math-ai/amc23": "math_verify",
    "HuggingFaceH4/MATH-500": "math_verify",
    "math-ai/minervamath": "math_verify",
    "Hothan/OlympiadBench": "math_verify",
    "openai/gsm8k": "gsm8k",
    "cais/mmlu": "choice",
    # vision evaluation (Geometry3K test shares the training source id)
    "AI4Math/MathVista": "mixed",
    "AI4Math/MathVerse": "mixed",
    "MathLLMs/MathVision": "mixed",
    "We-Math/We-Math": "mixed",
    # the CPU demo task (uec_recipe/demo)
    "uec_demo/digit_sum": "digit_sum",
}

# Free-form questions of the mixed vision benchmarks are graded like Geometry3K (see module docstring).
MIXED_FREE_FORM_GRADER = "mathruler"
ANSWER_TYPES = ("multiple_choice", "free_form")

# verl's geo3k format check (verl/utils/reward_score/geo3k.py): reasoning in <think>, answer in \boxed{} after it.
_GEO3K_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
GEO3K_FORMAT_WEIGHT = 0.1

# math-verify budgets: per parse / per comparison inside math-verify, and a wall-clock bound on a worker call.
MATH_VERIFY_TIMEOUT_S = 5
MATH_VERIFY_WALL_TIMEOUT_S = 30.0


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl custom reward: binary accuracy. Returns ``{"score", "acc", "pred"}`` with score == acc in {0.0, 1.0}."""
    correct, pred = _grade(data_source, solution_str, ground_truth, extra_info)
    acc = 1.0 if correct else 0.0
    return {"score": acc, "acc": acc, "pred": pred}


def compute_score_with_format(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """Opt-in: verl geo3k's shaped reward 0.9*acc + 0.1*format as ``score``; ``acc`` stays pure accuracy."""
    result = compute_score(data_source, solution_str, ground_truth, extra_info)
    fmt = 1.0 if _GEO3K_FORMAT.fullmatch(solution_str) else 0.0
    result["score"] = (1.0 - GEO3K_FORMAT_WEIGHT) * result["acc"] + GEO3K_FORMAT_WEIGHT * fmt
    result["format"] = fmt
    return result


def grader_for(data_source: str, extra_info: dict | None = None) -> str:
    """The grader a row is scored with; raises ValueError for a data source this project does not know."""
    grader = GRADER_BY_DATA_SOURCE.get(data_source)
    if grader is None:
        raise ValueError(
            f"uec_recipe.reward: unknown data_source {data_source!r}; "
            f"known: {sorted(GRADER_BY_DATA_SOURCE)}. Prepare data with `python -m data_prep.prepare`."
        )
    if grader != "mixed":
        return grader
    answer_type = (extra_info or {}).get("answer_type")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(
            f"uec_recipe.reward: data_source {data_source!r} mixes multiple-choice and free-form questions, so "
            f"extra_info['answer_type'] must be one of {ANSWER_TYPES}, got {answer_type!r}."
        )
    return "choice" if answer_type == "multiple_choice" else MIXED_FREE_FORM_GRADER


def _grade(data_source, solution_str, ground_truth, extra_info) -> tuple[bool, str]:
    grader = grader_for(data_source, extra_info)
    ground_truth = str(ground_truth)
    if grader == "digit_sum":
        return _grade_digit_sum(solution_str, ground_truth)
    if grader == "gsm8k":
        return _grade_gsm8k(solution_str, ground_truth)
    pred = last_boxed(solution_str)
    if pred is None:
        return False, ""
    if grader == "choice":
        return choice_letter(pred) == choice_letter(ground_truth) != "", pred
    if grader == "mathruler":
        from mathruler.grader import grade_answer  # lazy: the demo path must not pay for sympy

        return bool(grade_answer(pred, ground_truth)), pred
    return math_verify_equal(ground_truth, pred), pred


# --- answer extraction -------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None when there is none or it is unclosed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    body_start = start + len("\\boxed{")
    for i in range(body_start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return text[body_start:i].strip()
            depth -= 1
    return None


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
# A leading option letter: "C", "(C)", "C.", "C) 42", "C: 42", "Option C" - but not a word such as "Cat".
_CHOICE = re.compile(r"^(?:option\s+|answer\s*:?\s*)?\(?([A-Za-z])\)?(?:$|[\s.:,)])", re.IGNORECASE)


def choice_letter(answer: str) -> str:
    """Upper-case option letter an answer names, or "" when it names none."""
    answer = _TEXT_WRAPPER.sub(r"\1", answer).replace("$", "").strip()
    match = _CHOICE.match(answer)
    return match.group(1).upper() if match else ""


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


_HASH_NUMBER = re.compile(r"####\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")


def _grade_gsm8k(solution_str: str, ground_truth: str) -> tuple[bool, str]:
    # The prompt asks for \boxed{} (paper's template) while GSM8K's own format is "#### N": accept whichever the
    # response gives last.
    hash_pos = solution_str.rfind("####")
    box_pos = solution_str.rfind("\\boxed{")
    if hash_pos < 0 and box_pos < 0:
        return False, ""
    if hash_pos > box_pos:
        match = _HASH_NUMBER.match(solution_str, hash_pos)
        pred = match.group(1) if match else ""
    else:
        pred = last_boxed(solution_str) or ""
    number, gold = _as_number(pred), _as_number(ground_truth)
    return number is not None and number == gold, pred


def _as_number(text: str) -> Decimal | None:
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = text.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "").replace(",", "").strip()
    text = text.rstrip(".")
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


# --- math-verify, safe outside the main thread -------------------------------------------------------------------
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
