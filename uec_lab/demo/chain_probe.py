"""Where a task-v2 policy's entropy sits, and what its wrong chains get wrong.

    .venv/bin/python -m uec_lab.demo.chain_probe [--model assets/chain_sum/model] [--problems 32] [--samples 8]

Samples each level's fresh problems at T = 1 (top_p 1) and splits the full-distribution entropy of every generated
token by site: a *choice* token opens an operand the chain picks (the first digit of both operands of line 1 and of
the second operand of every later line: where the n!/2 correct orders differ) and every other token is a *mechanical*
one (copying the rest of an operand, the running total, the digit sums, separators). It also classifies each chain:
correct; an operand that is not in the question (miscopied); an operand used twice or left out; or every operand
right but a sum or the answer wrong. The point is to learn what an RL update can make the policy surer of: choices
(the diversity of orders) or mechanics (getting digits right).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

from uec_lab.demo import chain
from uec_lab.demo.chain_build import prompt_text

REPO = Path(__file__).resolve().parents[2]

LINE = 12  # tokens per chain line: 3 digits, "+", 3 digits, "=", 3 digits, newline (one token per digit)


def operands_used(text: str) -> list[int] | None:
    """The operands a chain combines, in its order (None if a line is not of the form abc+def=ghi)."""
    used = []
    for index, line in enumerate(line for line in text.split("\n") if not line.startswith("####")):
        left, _, rest = line.partition("+")
        right, equals, _ = rest.partition("=")
        if not (left.isdigit() and right.isdigit() and equals):
            return None
        used += [int(left), int(right)] if index == 0 else [int(right)]
    return used


def closest(value: int, operands: list[int]) -> int:
    """The index of the question's operand that shares most digits (place by place) with ``value``."""
    shared = [sum(a == b for a, b in zip(chain.number_text(value), chain.number_text(o))) for o in operands]
    return shared.index(max(shared))


def in_question_order(text: str, operands: list[int]) -> bool | None:
    """Whether the chain takes the operands left to right as the question lists them (None: not parseable)."""
    used = operands_used(text)
    if used is None:
        return None
    indices = [closest(value, operands) for value in used]
    return indices == sorted(indices)


def verdict(text: str, operands: list[int]) -> str:
    if chain.final_answer(text) == chain.answer_of(operands):
        return "correct"
    used = operands_used(text)
    if used is None:
        return "malformed"
    if any(value not in operands for value in used):
        return "miscopied operand"
    if sorted(used) != sorted(operands):
        return "operand repeated or left out"
    return "arithmetic or answer"


def choice_site(position: int, operands: int) -> bool:
    """Whether generated token ``position`` opens an operand the chain picks (first line: both operands; later
    lines: the second), for a chain of ``operands`` operands written as LINE tokens a line."""
    line, offset = divmod(position, LINE)
    return line < operands - 1 and (offset == 4 or (line == 0 and offset == 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uec_lab.demo.chain_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "assets/chain_sum/model"))
    parser.add_argument("--levels", default="3,4,5")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    rng = random.Random(args.seed)
    print(f"{args.model}: {args.problems} problems x {args.samples} samples per level, T = 1", flush=True)
    print("| level | entropy per choice token | per mechanical token | share at choices | chains: verdicts |")
    print("|---|---|---|---|---|")
    for level in map(int, args.levels.split(",")):
        sites = {"choice": [], "mechanical": []}
        verdicts = Counter()
        by_order = {True: [0, 0], False: [0, 0]}  # in the question's order or not -> [correct, chains]
        for _ in range(args.problems):
            question, operands = chain.problem(level, rng)
            batch = tokenizer([prompt_text(question)] * args.samples, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=LINE * level + 8,
                    output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip
            generated = out.sequences[:, batch["input_ids"].shape[1] :]
            for row in range(generated.shape[0]):
                text = tokenizer.decode(generated[row], skip_special_tokens=True).replace(" ", "")
                verdicts[verdict(text, operands)] += 1
                ordered = in_question_order(text, operands)
                if ordered is not None:
                    by_order[ordered][0] += chain.final_answer(text) == chain.answer_of(operands)
                    by_order[ordered][1] += 1
                for position in range(generated.shape[1]):
                    if generated[row, position].item() in (tokenizer.eos_token_id, tokenizer.pad_token_id):
                        break
                    logp = torch.log_softmax(out.scores[position][row].float(), -1)
                    p = logp.exp()
                    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum().item()
                    sites["choice" if choice_site(position, level) else "mechanical"].append(entropy)
        total = sum(sites["choice"]) + sum(sites["mechanical"])
        mean = {k: sum(v) / len(v) for k, v in sites.items()}
        chains = sum(verdicts.values())
        described = ", ".join(f"{name} {count / chains:.2f}" for name, count in verdicts.most_common())
        ordered, other = by_order[True], by_order[False]
        print(
            f"| L{level} | {mean['choice']:.3f} | {mean['mechanical']:.3f} | {sum(sites['choice']) / total:.2f} | "
            f"{described} | {ordered[1] / max(1, ordered[1] + other[1]):.2f}, {ordered[0] / max(1, ordered[1]):.2f} "
            f"| {other[0] / max(1, other[1]):.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
