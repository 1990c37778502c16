"""The ``robust`` grader: the most correct verdict we can give, an equivalent answer accepted, a near miss rejected.

It finds the answer in ``\\boxed{x}``, ``\\boxed x`` or ``\\fbox{x}`` (the last non-empty one, so an empty
``\\boxed{}`` echoed from the instruction does not hide the answer), removes what does not change the value (degree
signs including the Unicode ``°``, percent signs, trailing units in ``\\text{}`` or words, a ``$`` currency sign, a
single ``lhs =`` or ``\\approx`` in front when the gold is not an equation, a trailing period), reads ``7.353e14`` as
7.353·10^14, then compares plain decimals exactly and everything else with HF math-verify (``verify(gold, pred)``,
gold first). GSM8K accepts ``#### N`` as well as a box and is graded the same way. Multiple-choice rows accept only
the option letter (bare, in parentheses, in ``\\text{}``) or, when the converter stored the options in
``extra_info["options"]``, the exact text of the gold option.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from uec_recipe.reward.math_verify_pool import math_verify_equal
from uec_recipe.reward.paper import closing_brace


def grade_robust(kind: str, solution_str: str, ground_truth: str, extra_info) -> tuple[bool, str]:
    """The robust verdict on a row whose answer kind is ``kind`` ("math", "gsm8k" or "choice")."""
    if kind == "gsm8k":
        pred = _gsm8k_answer(solution_str)
        return pred is not None and robust_math_equal(ground_truth, pred), pred or ""
    pred = robust_last_boxed(solution_str)
    if pred is None:
        return False, ""
    if kind == "choice":
        return choice_equal(pred, ground_truth, _options(extra_info)), pred
    return robust_math_equal(ground_truth, pred), pred


# --- extraction -------------------------------------------------------------------------------------------------------

# \boxed{x}, \boxed {x}, \fbox{x}, and the brace-less \boxed x that models write (TeX boxes one token; a model
# writing "\boxed 34" means 34, so we take the run up to white space or the closing $).
_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")


def robust_last_boxed(text: str) -> str | None:
    """The last non-empty boxed answer in any of the forms above, or None."""
    answers = []
    for match in _BOX_START.finditer(text):
        position = match.end()
        if text.startswith("{", position):
            end = closing_brace(text, position + 1)
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
        if match is None or closing_brace(answer, answer.index("{") + 1) != len(answer) - 1:
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


# --- normalisation and comparison -------------------------------------------------------------------------------------

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


# --- multiple choice --------------------------------------------------------------------------------------------------

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
