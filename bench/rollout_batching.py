"""Throughput of the CPU 'hf' rollout: one request at a time vs. batched, on the quickstart's generation load.

    .venv/bin/python bench/rollout_batching.py [--repeats 3]

The load is one quickstart step: 16 prompts x 4 samples at T = 1.0 plus 6 difficult prompts x 8 samples at
T' = 1.2, all sent at once as verl's agent loop sends them. The server is driven directly (no Ray), with the
warm-started demo policy. Also checks that greedy outputs are identical with and without batching.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uec_lab.demo.build import build_demo, digit_sum_problem  # noqa: E402
from uec_recipe.cpu.hf_rollout import HFGenerationServer  # noqa: E402


def step_load(server, rng, greedy=False):
    requests = []
    for index in range(16 + 6):
        question, _ = digit_sum_problem(rng.randint(6, 14), rng)
        text = server.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        ids = server.tokenizer(text, add_special_tokens=False)["input_ids"]
        samples, temperature = (4, 1.0) if index < 16 else (8, 1.2)
        params = {"temperature": 0.0 if greedy else temperature, "top_p": 1.0, "top_k": -1, "logprobs": True}
        requests += [(ids, params)] * samples
    return requests


def serve(server, requests):
    async def run():
        calls = [
            server.generate(prompt_ids=ids, sampling_params=params, request_id=str(i))
            for i, (ids, params) in enumerate(requests)
        ]
        return await asyncio.gather(*calls)

    started = time.perf_counter()
    outputs = asyncio.run(run())
    return outputs, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    demo = build_demo()
    config = SimpleNamespace(prompt_length=64, response_length=16, seed=0)
    server = HFGenerationServer(config, SimpleNamespace(local_path=str(demo.model_dir), trust_remote_code=False))
    rates = {}
    for mode, max_rows in [("one at a time", 1), ("batched", 512)]:
        server.max_batch_rows = max_rows
        tokens_per_s = []
        for repeat in range(args.repeats):
            outputs, seconds = serve(server, step_load(server, random.Random(repeat)))
            tokens_per_s.append(sum(len(o.token_ids) for o in outputs) / seconds)
        rates[mode] = statistics.median(tokens_per_s)
        print(f"{mode:14s}: {rates[mode]:8.0f} generated tokens/s (median of {args.repeats}, {len(outputs)} requests)")
    print(f"speed-up: {rates['batched'] / rates['one at a time']:.1f}x")

    greedy = step_load(server, random.Random(99), greedy=True)
    server.max_batch_rows = 1
    alone, _ = serve(server, greedy)
    server.max_batch_rows = 512
    batched, _ = serve(server, greedy)
    same = sum(a.token_ids == b.token_ids for a, b in zip(alone, batched))
    print(f"greedy outputs identical with and without batching: {same}/{len(greedy)}")
    return 0 if same == len(greedy) else 1


if __name__ == "__main__":
    sys.exit(main())
