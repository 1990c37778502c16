"""The ``paper`` grader: the authors' scoring, call for call, so a reproduction is comparable with the paper's tables.

Their EasyR1-based code (github.com/597358816/EFRame) scores with ``examples/score_function/math.py:
math_compute_score`` (selected in ``examples/config.yaml``, ``worker.reward.score_function``):
``mathruler.grader.extract_boxed_content`` on the whole response (the last ``\\boxed{``, balanced braces, or the
string "None"), then ``mathruler.grader.grade_answer(extracted, ground_truth)``, accuracy only. The function does not
look at the benchmark, so every row their validation loop sees is scored this way.
"""

from __future__ import annotations


def grade_paper(solution_str: str, ground_truth: str) -> tuple[bool, str]:
    """EFRame ``math_acc_reward``: mathruler's own extraction (which yields the string "None" when there is no closed
    box, and that string is then graded like any answer) and ``grade_answer(answer, ground_truth)``. Only the
    reported pred differs: "" instead of "None" for no box."""
    from mathruler.grader import extract_boxed_content, grade_answer  # lazy: light reward files must not pay for sympy

    extracted = extract_boxed_content(solution_str)
    pred = last_boxed(solution_str)
    return bool(grade_answer(extracted, ground_truth)), "" if pred is None else pred


def paper_answers_equal(gold: str, pred: str) -> bool:
    from mathruler.grader import grade_answer

    return bool(grade_answer(pred, gold))


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None when there is none or it is unclosed; the
    same string as mathruler's extract_boxed_content whenever that finds a box."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    body_start = start + len("\\boxed{")
    end = closing_brace(text, body_start)
    return None if end is None else text[body_start:end].strip()


def closing_brace(text: str, body_start: int) -> int | None:
    """Index of the brace closing the group whose body starts at ``body_start``, or None if it never closes."""
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
