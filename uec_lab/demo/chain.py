"""Task v2: carry-less sums of three-digit numbers, with every intermediate result written out.

    prompt    What is 347 + 125 + 906?
    response  347+906=243
              243+125=368
              #### 368

Carry-less addition adds each digit position on its own, modulo 10, with no carry (Applegate, LeBrun and Sloane,
"Carryless Arithmetic (I): The Mod 10 Version", 2011): 347 ⊕ 125 = 462. It is commutative and associative, so the
operands may be combined in any order and every order reaches the same answer through different intermediate
results: a problem with n distinct operands has n!/2 correct chains, which is the diversity an update can keep or
lose. A chain is one line of 12 tokens per operand after the first (one token per digit), so the responses of the
task's levels run from about 20 to over 100 tokens.

The answer has three digits and, for three or more random operands, is close to uniform over its 1,000 values, so a
guesser that knows the level but not the question (``guessing_baseline``) scores about 1 - (1 - 1/1000)^16 = 1.6 %
pass@16: pass@k measures solving, not how widely answers spread.

Level n has n operands (``MIN_OPERANDS`` .. ``MAX_OPERANDS``). Per step, a small transformer must pick an operand it
has not used yet and add two three-digit numbers digit by digit; errors compound along the chain, so long chains
are where a warm-started policy fails (the difficulty ladder of uec_lab/demo/ladder.py).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

DATA_SOURCE = "uec_demo/chain_sum"  # training rows; validation rows carry their band: uec_demo/chain_sum/<band>
MIN_OPERANDS, MAX_OPERANDS = 2, 9
MIN_OPERAND, MAX_OPERAND = 100, 999
DIGITS = 3


def carryless_add(a: int, b: int) -> int:
    """Digit-wise sum modulo 10 of two numbers of ``DIGITS`` digits (leading zeros kept in the text)."""
    return int("".join(str((int(x) + int(y)) % 10) for x, y in zip(f"{a:0{DIGITS}d}", f"{b:0{DIGITS}d}")))


def number_text(value: int) -> str:
    return f"{value:0{DIGITS}d}"


def answer_of(operands: Sequence[int]) -> int:
    total = operands[0]
    for value in operands[1:]:
        total = carryless_add(total, value)
    return total


def problem(operands: int, rng: random.Random) -> tuple[str, list[int]]:
    """A question with ``operands`` random three-digit operands, and the operands."""
    values = [rng.randint(MIN_OPERAND, MAX_OPERAND) for _ in range(operands)]
    return "What is " + " + ".join(map(str, values)) + "?", values


def chain_text(operands: Sequence[int], rng: random.Random | None = None) -> str:
    """One correct response: the operands in a random order (their given order without ``rng``), each line the
    running result so far combined with the next operand, then the answer after ``####``."""
    order = list(operands)
    if rng is not None:
        rng.shuffle(order)
    lines, total = [], order[0]
    for value in order[1:]:
        combined = carryless_add(total, value)
        lines.append(f"{number_text(total)}+{number_text(value)}={number_text(combined)}")
        total = combined
    lines.append(f"#### {number_text(total)}")
    return "\n".join(lines)


_LAST_ANSWER = re.compile(r"####\s*(\d+)(?![\d.])")


def final_answer(response: str) -> int | None:
    """The number after the last ``####`` (only that one counts, so a response cannot list candidates)."""
    tail = response[response.rfind("####") :] if "####" in response else ""
    match = _LAST_ANSWER.match(tail)
    return int(match.group(1)) if match else None


def guessing_baseline(train_answers: Sequence[int], eval_answers: Sequence[int], k: int) -> float:
    """pass@k of a question-blind guesser: it draws k answers from the level's training-answer distribution (it
    sees the level, not the question). The mean over held-out problems of 1 - (1 - p)^k, p the training frequency
    of the problem's answer (docs/evaluation.md, "6. The second CPU study")."""
    if not train_answers or not eval_answers:
        raise ValueError("the guessing baseline needs training answers and held-out answers of the level")
    counts = Counter(train_answers)
    total = len(train_answers)
    return sum(1 - (1 - counts[answer] / total) ** k for answer in eval_answers) / len(eval_answers)
