"""The task-v2 probe's bookkeeping (uec_lab/demo/chain_probe.py): which tokens are choices, what a wrong chain got
wrong, and whether a chain keeps the question's order, on hand-written chains."""

from __future__ import annotations

from uec_lab.demo import chain
from uec_lab.demo.chain_probe import LINE, choice_site, in_question_order, operands_used, verdict

OPERANDS = [347, 125, 906]  # 347 ⊕ 125 = 462, 462 ⊕ 906 = 368; 347 ⊕ 906 = 243, 243 ⊕ 125 = 368


def test_a_line_is_twelve_tokens_and_choices_open_the_operands_a_chain_picks():
    text = chain.chain_text(OPERANDS)
    assert text == "347+125=462\n462+906=368\n#### 368"
    assert len(text.split("\n")[0]) + 1 == LINE  # one token per character of a line, newline included
    choices = [p for p in range(3 * LINE) if choice_site(p, operands=3)]
    assert choices == [0, 4, LINE + 4]  # line 1: both operands; line 2: the second; the answer line: none


def test_verdicts_name_what_went_wrong():
    assert verdict("347+906=243\n243+125=368\n#### 368", OPERANDS) == "correct"
    assert verdict("347+126=463\n463+906=369\n#### 369", OPERANDS) == "miscopied operand"
    assert verdict("347+125=462\n462+125=587\n#### 587", OPERANDS) == "operand repeated or left out"
    assert verdict("347+125=462\n462+906=367\n#### 367", OPERANDS) == "arithmetic or answer"
    assert verdict("347+125\n#### 1", OPERANDS) == "malformed"
    assert operands_used("347+125=462\n462+906=368\n#### 368") == [347, 125, 906]


def test_order_is_read_through_miscopies():
    assert in_question_order("347+125=462\n462+906=368\n#### 368", OPERANDS) is True
    assert in_question_order("347+906=243\n243+125=368\n#### 368", OPERANDS) is False
    assert in_question_order("348+125=463\n463+906=369\n#### 369", OPERANDS) is True  # 348 is closest to 347
    assert in_question_order("34+125\n", OPERANDS) is None
