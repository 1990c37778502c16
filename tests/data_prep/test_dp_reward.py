"""uec_recipe/reward/: the two graders, per data source; the format variant; registration; thread safety."""

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from uec_recipe import reward
from uec_recipe.reward import (
    ANSWER_KIND_BY_DATA_SOURCE,
    GRADERS,
    compute_score,
    compute_score_with_format,
    describe_grader,
    registry,
)

MATH12K = "hiyouga/math12k"
GEO3K = "hiyouga/geometry3k"
MINERVA = "math-ai/minervamath"
GSM8K = "openai/gsm8k"
MMLU = "cais/mmlu"
THINK = "<think>some reasoning</think> "


def acc(data_source, response, gold, extra_info=None, grader="paper"):
    result = compute_score(data_source, response, gold, extra_info, grader=grader)
    assert set(result) == {"score", "acc", "pred"}
    assert isinstance(result["score"], float) and result["score"] == result["acc"] in (0.0, 1.0)
    assert isinstance(result["pred"], str)
    return result["acc"]


# --- both graders --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grader", GRADERS)
@pytest.mark.parametrize("source", [MATH12K, GEO3K])
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
def test_free_form_math_equivalence(grader, source, pred, gold, expected):
    assert acc(source, f"{THINK}so the answer is \\boxed{{{pred}}}.", gold, grader=grader) == expected


@pytest.mark.parametrize("grader", GRADERS)
def test_free_form_needs_a_box_and_takes_the_last_one(grader):
    assert acc(MATH12K, "the answer is 0.5", "\\frac{1}{2}", grader=grader) == 0.0
    assert acc(MATH12K, "\\boxed{3} no wait \\boxed{0.5}", "\\frac{1}{2}", grader=grader) == 1.0
    assert acc(MATH12K, "\\boxed{0.5} no wait \\boxed{3}", "\\frac{1}{2}", grader=grader) == 0.0
    assert compute_score(MATH12K, "\\boxed{\\frac{1}{2}}", "0.5", grader=grader)["pred"] == "\\frac{1}{2}"
    assert compute_score(MATH12K, "no box here", "0.5", grader=grader)["pred"] == ""


@pytest.mark.parametrize("grader", GRADERS)
def test_unknown_data_source_is_a_clear_error(grader):
    with pytest.raises(ValueError, match="no/such_dataset.*register_grader"):
        compute_score("no/such_dataset", "\\boxed{1}", "1", grader=grader)


def test_unknown_grader_is_a_clear_error():
    with pytest.raises(ValueError, match=r"grader must be one of \('paper', 'robust'\), got 'strict'.*reward_kwargs"):
        compute_score(MATH12K, "\\boxed{1}", "1", grader="strict")


@pytest.mark.parametrize("grader", GRADERS)
def test_format_variant_matches_verl_geo3k_and_keeps_pure_accuracy(grader):
    formatted = compute_score_with_format(GEO3K, "<think>x</think> \\boxed{34}", "34", grader=grader)
    assert formatted["score"] == pytest.approx(1.0) and formatted["acc"] == 1.0 and formatted["format"] == 1.0
    wrong_but_formatted = compute_score_with_format(GEO3K, "<think>x</think> \\boxed{35}", "34", grader=grader)
    assert wrong_but_formatted["score"] == pytest.approx(0.1) and wrong_but_formatted["acc"] == 0.0
    right_unformatted = compute_score_with_format(GEO3K, "\\boxed{34}", "34", grader=grader)
    assert right_unformatted["score"] == pytest.approx(0.9) and right_unformatted["acc"] == 1.0


def test_format_variant_follows_the_grader():
    # 30 degrees written with the Unicode sign: only the robust grader reads it as 30.
    response = "<think>x</think> \\boxed{30°}"
    assert compute_score_with_format(GEO3K, response, "30", grader="paper")["score"] == pytest.approx(0.1)
    assert compute_score_with_format(GEO3K, response, "30", grader="robust")["score"] == pytest.approx(1.0)


def test_mixed_benchmark_dispatches_on_answer_type():
    choice = {"answer_type": "multiple_choice"}
    free = {"answer_type": "free_form"}
    for grader in GRADERS:
        assert acc("AI4Math/MathVista", "\\boxed{B}", "B", choice, grader) == 1.0
        assert acc("AI4Math/MathVista", "\\boxed{2.50}", "2.5", free, grader) == 1.0
        with pytest.raises(ValueError, match="answer_type"):
            compute_score("AI4Math/MathVista", "\\boxed{B}", "B", {}, grader=grader)


# --- paper: exactly the authors' scoring ---------------------------------------------------------------------------

# Responses as models write them, including the edge cases of mathruler's extraction: no box (it returns the string
# "None"), an unclosed box, nested braces, two boxes, \fbox, and a brace-less \boxed.
PAPER_RESPONSES = [
    "",
    "the answer is 5",
    "<think>5+5</think> \\boxed{10}",
    "<think>r</think> \\boxed{10.0}",
    "\\boxed{3} then \\boxed{\\frac{1}{2}}",
    "\\boxed{\\frac{1}{2}} then \\boxed{}",
    "\\boxed{0.5}",
    "\\boxed{\\dfrac{1}{2}}",
    "\\boxed{\\text{(B)}}",
    "\\boxed{B}",
    "\\boxed{b}",
    "\\boxed{B. 4}",
    "\\boxed{a = 5}",
    "\\boxed{A, C}",
    "\\boxed{18 \\text{ dollars}}",
    "\\boxed{x = 18}",
    "\\boxed{30°}",
    "\\boxed{34^\\circ}",
    "\\boxed{\\angle 2 = 34^\\circ}",
    "\\boxed{25\\%}",
    "\\boxed{7.353 \\times 10^{14}}",
    "\\boxed{3\\sqrt{2}}",
    "\\boxed{\\sqrt{18}}",
    "\\boxed{-3, 3}",
    "\\boxed{(1, 2)}",
    "\\boxed{\\{1, 2\\}}",
    "\\boxed{1,000}",
    "\\boxed 3",
    "\\fbox{3}",
    "\\boxed{3",
    "\\boxed{{3}}",
    "\\boxed{None}",
    "$\\boxed{2\\pi}$",
    "\\boxed{6.28}",
]
PAPER_GOLDS = ["10", "\\frac{1}{2}", "B", "18", "30", "34", "25\\%", "7.353e14", "3\\sqrt{2}", "3,-3", "(1,2)", "2\\pi"]
PAPER_GOLDS += ["1000", "3", "None"]


@pytest.mark.parametrize("data_source", sorted(ANSWER_KIND_BY_DATA_SOURCE))
def test_paper_grader_is_mathruler_exactly(data_source):
    from mathruler.grader import extract_boxed_content, grade_answer

    extra_info = {"answer_type": "free_form"} if ANSWER_KIND_BY_DATA_SOURCE[data_source] == "mixed" else None
    verdicts = set()
    for response, gold in itertools.product(PAPER_RESPONSES, PAPER_GOLDS):
        expected = 1.0 if grade_answer(extract_boxed_content(response), gold) else 0.0
        assert acc(data_source, response, gold, extra_info, "paper") == expected, (response, gold)
        verdicts.add(expected)
    assert verdicts == {0.0, 1.0}  # the comparison covers both outcomes
    # mathruler's "None" for a response without a box is graded like any answer: so is ours.
    assert acc(data_source, "no box at all", "None", extra_info, "paper") == 1.0


def test_paper_is_the_default_grader():
    # Robust reads the Unicode degree sign, paper (mathruler) does not: the default must be paper.
    assert compute_score(GEO3K, "\\boxed{30°}", "30")["acc"] == 0.0
    assert compute_score(GEO3K, "\\boxed{30°}", "30", grader="robust")["acc"] == 1.0


# --- robust: false negatives fixed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data_source, response, gold",
    [
        # scientific notation: math-verify reads a Minerva gold "7.353e14" as 7.353*e*14
        (MINERVA, "The luminosity is $L = 7.353 \\times 10^{14}$ W, so \\boxed{7.353 \\times 10^{14}}.", "7.353e14"),
        (MINERVA, "so the distance is \\boxed{7.353e14} meters", "7.353 \\times 10^{14}"),
        (MINERVA, "Hence \\boxed{1.2 \\times 10^{-3}}.", "1.2e-3"),
        # percent
        ("HuggingFaceH4/MATH-500", "The increase is 25 percent, so \\boxed{25}.", "25\\%"),
        ("HuggingFaceH4/MATH-500", "The discount is \\boxed{10\\%}.", "10"),
        ("HuggingFaceH4/MATH-500", "The discount is \\boxed{10%}.", "10"),
        # units and wrappers, which GSM8K's number-only grader used to reject
        (GSM8K, "She spends 18 dollars in total. \\boxed{18 \\text{ dollars}}", "18"),
        (GSM8K, "Solving gives \\boxed{x = 18}", "18"),
        (GSM8K, "Each gets half: \\boxed{\\frac{1}{2}}", "0.5"),
        (GSM8K, "Total cost:\n#### \\$18", "18"),
        (GSM8K, "#### 2,000 pens", "2000"),
        (MATH12K, "The area is \\boxed{6 \\text{ cm}^2}.", "6"),
        (MATH12K, "The length is \\boxed{6 \\text{ m}}.", "6"),
        (MATH12K, "\\boxed{2 + 3\\mathrm{i}}", "2+3i"),
        # Geometry3K: the Unicode degree sign, an angle named before its value
        (GEO3K, "<think>The angles sum to 180°.</think> The answer is \\boxed{30°}", "30"),
        (GEO3K, "<think>Vertical angles are equal.</think> \\boxed{\\angle 2 = 34^\\circ}", "34"),
        (GEO3K, "<think>x</think> \\boxed{m \\angle ABC = 34}", "34"),
        (GEO3K, "<think>x</think> \\boxed{34 degrees}", "34"),
        # box variants
        (MATH12K, "Therefore the answer is $\\boxed 3$.", "3"),
        (MATH12K, "Therefore the answer is \\fbox{3}.", "3"),
        (MATH12K, "So \\boxed{3}. The final answer MUST BE put in \\boxed{}.", "3"),
        (MATH12K, "So \\boxed{\\boxed{3}}", "3"),
        # what math-verify already handled stays handled
        (MATH12K, "\\boxed{-3, 3}", "3,-3"),
        (MATH12K, "\\boxed{y = 2x + 1}", "y=2x+1"),
        (MATH12K, "\\boxed{1\\,000}", "1000"),
        (GEO3K, "\\boxed{5.80}", "5.8"),
    ],
)
def test_robust_accepts_equivalent_answers(data_source, response, gold):
    assert acc(data_source, response, gold, grader="robust") == 1.0


@pytest.mark.parametrize(
    "data_source, response, gold",
    [
        (MINERVA, "\\boxed{7.35 \\times 10^{14}}", "7.353e14"),
        (MINERVA, "\\boxed{7.353 \\times 10^{13}}", "7.353e14"),
        ("HuggingFaceH4/MATH-500", "\\boxed{11\\%}", "10"),
        (GSM8K, "\\boxed{19 \\text{ dollars}}", "18"),
        (GSM8K, "\\boxed{x = 19}", "18"),
        (GSM8K, "#### 19", "18"),
        (GSM8K, "\\boxed{18} ... on reflection #### 19", "18"),
        (GSM8K, "the answer is 18", "18"),
        (GEO3K, "\\boxed{\\angle 2 = 56^\\circ}", "34"),
        (GEO3K, "\\boxed{34.5}", "34"),
        (GEO3K, "\\boxed{5.83}", "5.8"),
        (GEO3K, "\\boxed{2\\sqrt{3}}", "3\\sqrt{2}"),
        (MATH12K, "\\boxed{5x}", "5"),
        (MATH12K, "\\boxed{5 x}", "5"),
        (MATH12K, "\\boxed{3i}", "3"),
        (MATH12K, "\\boxed{-5}", "5"),
        (MATH12K, "\\boxed{x \\leq 5}", "5"),
        (MATH12K, "\\boxed{3}", "3,-3"),
        (MATH12K, "\\boxed{[1,2)}", "(1,2)"),
        (MATH12K, "\\boxed{2x+2}", "y=2x+1"),
        (MATH12K, "\\boxed{4}. The final answer MUST BE put in \\boxed{}.", "3"),
        (MATH12K, "\\boxed{}", "3"),
        (MATH12K, "the answer is 3", "3"),
        (MATH12K, "\\boxed{\\text{Tuesday}}", "\\text{Monday}"),
        # math-verify alone drops \mathrm{}/\text{} as units and would read these as 3 and 5
        (MATH12K, "\\boxed{3\\mathrm{i}}", "3"),
        (MATH12K, "\\boxed{2+3\\text{i}}", "5"),
    ],
)
def test_robust_rejects_near_misses(data_source, response, gold):
    assert acc(data_source, response, gold, grader="robust") == 0.0


# --- robust: multiple choice --------------------------------------------------------------------------------------

MMLU_OPTIONS = {"answer_type": "multiple_choice", "options": ["3", "5", "4", "22"]}


@pytest.mark.parametrize(
    "response, extra_info, expected",
    [
        ("\\boxed{C}", None, 1.0),
        ("\\boxed{(C)}", None, 1.0),
        ("\\boxed{C.}", None, 1.0),
        ("\\boxed{\\text{C}}", None, 1.0),
        ("\\boxed{\\textbf{(C)}}", None, 1.0),
        ("\\boxed{c}", None, 1.0),
        ("\\boxed{B}", None, 0.0),
        ("\\boxed{Cat}", None, 0.0),
        ("C", None, 0.0),
        # the false positives the old letter grader gave
        ("\\boxed{c = 5}", None, 0.0),
        ("\\boxed{c triangle}", None, 0.0),
        ("\\boxed{C, A}", None, 0.0),
        ("\\boxed{C and A}", None, 0.0),
        ("\\boxed{Option C}", None, 0.0),
        # the option text, only when the options are stored with the row
        ("\\boxed{4}", MMLU_OPTIONS, 1.0),
        ("\\boxed{C. 4}", MMLU_OPTIONS, 1.0),
        ("\\boxed{(C) 4}", MMLU_OPTIONS, 1.0),
        ("\\boxed{C. 5}", MMLU_OPTIONS, 0.0),
        ("\\boxed{B. 4}", MMLU_OPTIONS, 0.0),
        ("\\boxed{5}", MMLU_OPTIONS, 0.0),
        ("\\boxed{4}", None, 0.0),
        ("\\boxed{C. 4}", None, 0.0),
    ],
)
def test_robust_multiple_choice(response, extra_info, expected):
    assert acc(MMLU, THINK + response, "C", extra_info, "robust") == expected


@pytest.mark.parametrize("response", ["\\boxed{a = 5}", "\\boxed{a triangle}", "\\boxed{A, C}", "\\boxed{A and C}"])
def test_multiple_choice_false_positives_are_gone_under_both_graders(response):
    for grader in GRADERS:
        assert acc(MMLU, THINK + response, "A", grader=grader) == 0.0
        assert acc("AI4Math/MathVista", response, "A", {"answer_type": "multiple_choice"}, grader) == 0.0


def test_options_stored_by_parquet_arrive_as_arrays():
    # verl and pandas hand a parquet list back as a numpy array, not a Python list.
    import numpy as np

    extra_info = {"answer_type": "multiple_choice", "options": np.array(["red", "blue"], dtype=object)}
    assert acc("AI4Math/MathVista", "\\boxed{blue}", "B", extra_info, "robust") == 1.0


# --- selecting the grader in training, as verl does -----------------------------------------------------------------


def _compose(*overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="uec_recipe.config", version_base=None):
        return compose(config_name="uec_trainer", overrides=list(overrides))


@pytest.mark.parametrize("reference", ["pkg://uec_recipe.reward", reward.__file__])
def test_training_selects_the_grader_through_custom_reward_function_kwargs(reference):
    # The package by import path (the GPU scripts) and its __init__.py by file path (verl loads that under a
    # generated module name) are the same entry point.
    from verl.trainer.ppo.reward import get_custom_reward_fn

    path = f"reward.custom_reward_function.path={reference}"
    call = dict(data_source=GEO3K, solution_str="<think>x</think> \\boxed{30°}", ground_truth="30", extra_info={})
    default = get_custom_reward_fn(_compose(path))
    assert default(**call)["acc"] == 0.0  # paper
    robust = get_custom_reward_fn(_compose(path, "reward.custom_reward_function.reward_kwargs.grader=robust"))
    assert robust(**call)["acc"] == 1.0
    # reward.reward_kwargs is the DAPO reward manager's, and verl 0.9.1 does not pass it to compute_score.
    ignored = get_custom_reward_fn(_compose(path, "+reward.reward_kwargs.grader=robust"))
    assert ignored(**call)["acc"] == 0.0


# --- registration -----------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    monkeypatch.setattr(registry, "_DESCRIPTIONS", {})


def test_register_grader_scores_a_new_data_source(clean_registry):
    calls = []

    def exact(solution_str, ground_truth, extra_info, grader):
        calls.append(grader)
        answer = solution_str.rsplit("ANSWER:", 1)[-1].strip()
        return answer == ground_truth, answer

    reward.register_grader("my_lab/words", exact)
    assert compute_score("my_lab/words", "ANSWER: seven", "seven", {"split": "test"})["acc"] == 1.0
    assert compute_score("my_lab/words", "ANSWER: eight", "seven", grader="robust") == {
        "score": 0.0,
        "acc": 0.0,
        "pred": "eight",
    }
    assert calls == ["paper", "robust"]
    assert describe_grader("my_lab/words", "paper") == (
        "registered grader test_register_grader_scores_a_new_data_source.<locals>.exact from " + __file__
    )


def test_register_grader_refuses_bad_registrations(clean_registry):
    with pytest.raises(ValueError, match="one of the paper's data sources"):
        reward.register_grader(GEO3K, lambda *args: (True, ""))
    with pytest.raises(ValueError, match="non-empty string"):
        reward.register_grader(" ", lambda *args: (True, ""))
    with pytest.raises(TypeError, match="must be callable"):
        reward.register_grader("my_lab/x", "math")
    reward.register_grader("my_lab/x", lambda *args: 1.0)
    with pytest.raises(TypeError, match=r"registered for 'my_lab/x' must return \(correct, extracted answer"):
        compute_score("my_lab/x", "\\boxed{1}", "1")


def test_registering_again_replaces(clean_registry):
    # verl loads the reward file once per reward worker, so the same registration runs more than once.
    reward.register_grader("my_lab/x", lambda *args: (False, "first"))
    reward.register_grader("my_lab/x", lambda *args: (True, "second"))
    assert compute_score("my_lab/x", "", "1")["pred"] == "second"
    assert reward.registered_data_sources() == ["my_lab/x"]


def test_describe_grader_names_what_scored_each_source():
    for configured in (GEO3K, MATH12K):
        assert "mathruler" in describe_grader(configured, "paper")
        assert "released configuration scores" in describe_grader(configured, "paper")
    assert "does not configure" in describe_grader("HuggingFaceH4/aime_2024", "paper")
    assert describe_grader("HuggingFaceH4/aime_2024", "robust").startswith("robust:")
    with pytest.raises(ValueError, match="unknown data_source"):
        describe_grader("no/such", "paper")


# --- threads, import cost -----------------------------------------------------------------------------------------


def test_math_verify_outside_the_main_thread():
    # verl's reward loop calls compute_score through run_in_executor, i.e. in worker threads, where math-verify's
    # signal.alarm timeouts cannot be installed. The same answers must grade the same there.
    cases = [
        ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("\\boxed{\\sqrt{18}}", "3\\sqrt{2}", 1.0),
        ("\\boxed{7.353 \\times 10^{14}}", "7.353e14", 1.0),
        ("\\boxed{2\\sqrt{3}}", "3\\sqrt{2}", 0.0),
    ]

    def score(case):
        return compute_score(MATH12K, case[0], case[1], grader="robust")["acc"]

    in_main = [score(case) for case in cases]
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_threads = list(pool.map(score, cases))
    assert in_main == in_threads == [expected for _, _, expected in cases]


def test_signal_timeouts_really_fail_in_threads():
    # Guards the premise of the thread path: if math-verify ever stops using signals this test tells us the worker
    # pool can go.
    from math_verify import parse

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(parse, "\\boxed{1}", parsing_timeout=5).result()


def test_import_stays_light():
    # Reward files of one's own import this package in every reward worker: importing it, and scoring with a
    # registered grader that needs no parsing library, must not pull in math-verify, sympy or mathruler.
    code = (
        "import sys; from uec_recipe import reward; "
        "reward.register_grader('my_lab/x', lambda s, g, e, grader: (s == g, s)); "
        "reward.compute_score('my_lab/x', '5', '5'); reward.compute_score('my_lab/x', '5', '5', grader='robust'); "
        "print(any(m.split('.')[0] in ('math_verify', 'sympy', 'mathruler') for m in sys.modules))"
    )
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_registered_description_is_recorded(clean_registry):
    def exact(solution_str, ground_truth, extra_info, grader):
        return solution_str == ground_truth, solution_str

    reward.register_grader("my_lab/words", exact, description="exact match")
    assert describe_grader("my_lab/words", "robust").endswith(f"exact from {__file__}: exact match")
    reward.register_grader("my_lab/words", exact)  # registering again without one drops it
    assert describe_grader("my_lab/words", "robust").endswith(f"exact from {__file__}")


def test_every_converter_data_source_has_a_grader():
    from data_prep.sources import DATASETS

    assert {spec.source_id for spec in DATASETS.values()} <= set(ANSWER_KIND_BY_DATA_SOURCE)
