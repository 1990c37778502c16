"""uec_recipe/reward.py: binary accuracy per data source, the format variant, and thread safety of math-verify."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from uec_recipe.reward import GRADER_BY_DATA_SOURCE, compute_score, compute_score_with_format

MATH_VERIFY_SOURCE = "hiyouga/math12k"  # graded with math-verify
MATHRULER_SOURCE = "hiyouga/geometry3k"  # graded with mathruler
THINK = "<think>some reasoning</think> "


def acc(data_source, response, gold, extra_info=None):
    result = compute_score(data_source, response, gold, extra_info)
    assert set(result) == {"score", "acc", "pred"}
    assert isinstance(result["score"], float) and result["score"] == result["acc"] in (0.0, 1.0)
    assert isinstance(result["pred"], str)
    return result["acc"]


@pytest.mark.parametrize("source", [MATH_VERIFY_SOURCE, MATHRULER_SOURCE])
@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("0.5", "\\frac{1}{2}", 1.0),
        ("\\frac{1}{2}", "0.5", 1.0),
        ("\\sqrt{18}", "3\\sqrt{2}", 1.0),
        ("3\\sqrt{2}", "\\sqrt{18}", 1.0),
        ("72", "72", 1.0),
        ("0.4", "\\frac{1}{2}", 0.0),
        ("2\\sqrt{3}", "3\\sqrt{2}", 0.0),
        ("71", "72", 0.0),
    ],
)
def test_free_form_math_equivalence(source, pred, gold, expected):
    assert acc(source, f"{THINK}so the answer is \\boxed{{{pred}}}.", gold) == expected


def test_free_form_needs_a_box_and_takes_the_last_one():
    assert acc(MATH_VERIFY_SOURCE, "the answer is 0.5", "\\frac{1}{2}") == 0.0
    assert acc(MATH_VERIFY_SOURCE, "\\boxed{3} no wait \\boxed{0.5}", "\\frac{1}{2}") == 1.0
    assert acc(MATH_VERIFY_SOURCE, "\\boxed{0.5} no wait \\boxed{3}", "\\frac{1}{2}") == 0.0
    assert compute_score(MATH_VERIFY_SOURCE, "\\boxed{\\frac{1}{2}}", "0.5")["pred"] == "\\frac{1}{2}"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("\\boxed{C}", 1.0),
        ("\\boxed{(C)}", 1.0),
        ("\\boxed{\\text{C}}", 1.0),
        ("\\boxed{C. 4}", 1.0),
        ("\\boxed{c}", 1.0),
        ("\\boxed{B}", 0.0),
        ("\\boxed{Cat}", 0.0),
        ("C", 0.0),
    ],
)
def test_multiple_choice_letter(response, expected):
    assert acc("cais/mmlu", THINK + response, "C") == expected


def test_mixed_benchmark_dispatches_on_answer_type():
    choice = {"answer_type": "multiple_choice"}
    free = {"answer_type": "free_form"}
    assert acc("AI4Math/MathVista", "\\boxed{B}", "B", choice) == 1.0
    assert acc("AI4Math/MathVista", "\\boxed{2.50}", "2.5", free) == 1.0
    with pytest.raises(ValueError, match="answer_type"):
        compute_score("AI4Math/MathVista", "\\boxed{B}", "B", {})


@pytest.mark.parametrize(
    "response, expected",
    [
        ("#### 72", 1.0),
        ("so \\boxed{72}", 1.0),
        ("#### 72.0", 1.0),
        ("#### $72", 1.0),
        ("#### 71", 0.0),
        ("#### 71 ... actually #### 72", 1.0),
        ("\\boxed{71} then #### 72", 1.0),
        ("#### 72 then \\boxed{71}", 0.0),
        ("the answer is 72", 0.0),
    ],
)
def test_gsm8k_accepts_hash_and_boxed(response, expected):
    assert acc("openai/gsm8k", response, "72") == expected


def test_gsm8k_thousands_separator():
    assert acc("openai/gsm8k", "#### 2,000", "2000") == 1.0


@pytest.mark.parametrize(
    "response, expected, pred",
    [
        ("#### 37", 1.0, "37"),
        ("####37", 1.0, "37"),
        ("#### 36", 0.0, "36"),
        ("#### 37.5", 0.0, ""),
        ("#### 3 #### 37", 1.0, "37"),
        ("#### 37 #### 3", 0.0, "3"),
        ("37", 0.0, ""),
        ("", 0.0, ""),
    ],
)
def test_digit_sum_demo(response, expected, pred):
    result = compute_score("uec_demo/digit_sum", response, "37")
    assert (result["acc"], result["pred"]) == (expected, pred)


def test_unknown_data_source_is_a_clear_error():
    with pytest.raises(ValueError, match="no/such_dataset"):
        compute_score("no/such_dataset", "\\boxed{1}", "1")


def test_format_variant_matches_verl_geo3k_and_keeps_pure_accuracy():
    formatted = compute_score_with_format(MATHRULER_SOURCE, "<think>x</think> \\boxed{34}", "34")
    assert formatted["score"] == pytest.approx(1.0) and formatted["acc"] == 1.0
    wrong_but_formatted = compute_score_with_format(MATHRULER_SOURCE, "<think>x</think> \\boxed{35}", "34")
    assert wrong_but_formatted["score"] == pytest.approx(0.1) and wrong_but_formatted["acc"] == 0.0
    right_unformatted = compute_score_with_format(MATHRULER_SOURCE, "\\boxed{34}", "34")
    assert right_unformatted["score"] == pytest.approx(0.9) and right_unformatted["acc"] == 1.0


def test_math_verify_outside_the_main_thread():
    # verl's reward loop calls compute_score through run_in_executor, i.e. in worker threads, where math-verify's
    # signal.alarm timeouts cannot be installed. The same answers must grade the same there.
    cases = [
        ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
        ("\\boxed{\\sqrt{18}}", "3\\sqrt{2}", 1.0),
        ("\\boxed{2}", "3", 0.0),
    ]
    in_main = [compute_score(MATH_VERIFY_SOURCE, r, g)["acc"] for r, g, _ in cases]
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_threads = list(pool.map(lambda case: compute_score(MATH_VERIFY_SOURCE, case[0], case[1])["acc"], cases))
    assert in_main == in_threads == [expected for _, _, expected in cases]


def test_signal_timeouts_really_fail_in_threads():
    # Guards the premise of the thread path: if math-verify ever stops using signals this test tells us the worker
    # pool can go.
    from math_verify import parse

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(parse, "\\boxed{1}", parsing_timeout=5).result()


def test_import_and_demo_path_stay_light():
    # The demo reward runs for every rollout sample: importing the module and scoring digit sums must not pull in
    # math-verify or sympy.
    code = (
        "import sys; from uec_recipe.reward import compute_score; "
        "compute_score('uec_demo/digit_sum', '#### 5', '5'); "
        "print(any(m.split('.')[0] in ('math_verify', 'sympy', 'mathruler') for m in sys.modules))"
    )
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_every_converter_data_source_has_a_grader():
    from data_prep.sources import DATASETS

    assert {spec.source_id for spec in DATASETS.values()} <= set(GRADER_BY_DATA_SOURCE)
