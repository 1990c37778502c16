"""A tiny Llama-architecture policy for the digit-sum task, built offline and cached: UEC-RL on a second model family.

    .venv/bin/python examples/other_model_family/build_llama.py [--print-env] [--root DIR]

The CPU demo's policy is a Qwen2 (uec_lab/demo/build.py). This builds the same kind of policy as a
``LlamaForCausalLM``, with the demo's tokenizer and task, and a short supervised warm start of its own: short sums
are weighted up so that, after a few hundred steps, the policy solves some sums and misses others. UEC-RL needs
both kinds of group in a step (mixed groups carry GRPO's signal; all-wrong groups are the "difficult" prompts its
exploration re-samples), so the build samples every task level and refuses a model whose groups are all of one kind.

Everything lands in ``$UEC_CACHE_DIR/llama-<settings hash>`` (default ``~/.cache/uec-rl``), published atomically
the way the demo's build is, so a second call returns in about a second. ``--print-env`` prints
``MODEL=... TRAIN=... TEST=...`` for the shell, which is how ``run.sh`` hands the build to
``examples/verl_grpo_to_uec/uec.sh``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from uec_lab.demo.build import (
    DATA_SOURCE,
    DemoArtifacts,
    build_cached,
    build_tokenizer,
    cache_root,
    digit_sum_batch,
    digit_sum_problem,
    rl_rows,
    supervised_warm_start,
)


@dataclass(frozen=True)
class LlamaSettings:
    """Every setting that changes what gets built (the cache key is a hash of these)."""

    build_version: int = 1  # bumped when the build changes in a way no other setting shows
    seed: int = 11
    vocab_size: int = 400  # the demo tokenizer's
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    tie_word_embeddings: bool = False  # Llama's default; the Qwen2 demo ties them
    warm_start_steps: int = 600
    warm_start_batch: int = 32
    warm_start_lr: float = 3e-3
    warm_start_warmup: int = 60
    # level L has L + 1 single-digit operands; weight min(1, 2^-(operands - 3)) favours the short sums
    warm_start_levels: tuple[int, ...] = tuple(range(1, 9))
    task_levels: tuple[int, ...] = (4, 5, 6, 7, 8, 9)  # where groups of 4 came out mixed and all wrong
    train_prompts: int = 512
    test_prompts_per_level: int = 4
    check_prompts_per_level: int = 16  # measured after the warm start: groups of 4 samples at T = 1
    check_samples: int = 4

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _log(message: str) -> None:
    print(message, flush=True)


def build_llama_model(tokenizer, settings: LlamaSettings):
    """A random-init LlamaForCausalLM sized like the demo's Qwen2 (no bos: the demo's chat template has none)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(settings.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=settings.tie_word_embeddings,
        bos_token_id=None,  # LlamaConfig defaults to ids 1 and 2 for bos and eos: take the tokenizer's
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def warm_start(model, tokenizer, settings: LlamaSettings, log=_log) -> dict:
    """Supervised next-token loss on the answer (``#### sum``), through the demo's shared loop."""
    rng = random.Random(settings.seed + 1)
    levels = list(settings.warm_start_levels)
    weights = [min(1.0, 2.0 ** -((level + 1) - 3)) for level in levels]

    def next_batch(_step):
        return digit_sum_batch(tokenizer, rng, levels, weights, settings.warm_start_batch)

    return supervised_warm_start(model, settings, next_batch, log)


def measure_groups(model, tokenizer, settings: LlamaSettings, seed: int = 99) -> dict[int, dict]:
    """Per task level: groups of ``check_samples`` samples at T = 1 (as the RL rollout draws them), graded by the
    training reward, counted as all wrong, mixed or all correct."""
    import torch

    from uec_lab.demo.reward import compute_score

    rng = random.Random(seed)
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    figures = {}
    for level in settings.task_levels:
        problems = [digit_sum_problem(level, rng) for _ in range(settings.check_prompts_per_level)]
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q, _ in problems
        ]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            drawn = model.generate(
                **batch,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                num_return_sequences=settings.check_samples,
                max_new_tokens=8,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(drawn[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        correct = [
            sum(
                compute_score(DATA_SOURCE, texts[p * settings.check_samples + s], str(total))["acc"]
                for s in range(settings.check_samples)
            )
            for p, (_, total) in enumerate(problems)
        ]
        figures[level] = {
            "accuracy": sum(correct) / (len(problems) * settings.check_samples),
            "all_wrong": sum(k == 0 for k in correct),
            "mixed": sum(0 < k < settings.check_samples for k in correct),
            "all_correct": sum(k == settings.check_samples for k in correct),
        }
    return figures


def check_groups(figures: dict[int, dict]) -> None:
    """UEC-RL's stages need mixed and all-wrong groups among the task's levels; fail with the figures if not."""
    mixed = sum(f["mixed"] for f in figures.values())
    all_wrong = sum(f["all_wrong"] for f in figures.values())
    if mixed == 0 or all_wrong == 0:
        raise RuntimeError(
            f"the warm-started Llama gives {mixed} mixed and {all_wrong} all-wrong groups over its task levels "
            f"({describe(figures)}); UEC-RL needs both. Change task_levels or the warm start in LlamaSettings."
        )


def describe(figures: dict[int, dict]) -> str:
    return ", ".join(
        f"L{level} acc {f['accuracy']:.2f} (wrong/mixed/right groups {f['all_wrong']}/{f['mixed']}/{f['all_correct']})"
        for level, f in figures.items()
    )


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)


def build_llama(settings: LlamaSettings = LlamaSettings(), root: Path | None = None, log=_log) -> DemoArtifacts:
    """Build (or reuse from the cache) the Llama policy and its data; returns where they are."""
    import torch

    artifacts = DemoArtifacts(Path(root) if root is not None else cache_root() / f"llama-{settings.key()}")

    def build_into(staging: Path) -> None:
        # One thread: a model this small gains nothing from intra-op threads, and on a shared machine their
        # spin-waiting made a warm-start step 10-15x slower (about 0.5-0.7 s instead of 46 ms, on 2 cores).
        torch.set_num_threads(1)
        tokenizer = build_tokenizer(None, settings.vocab_size, settings.seed)
        model = build_llama_model(tokenizer, settings)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"[llama] policy: Llama architecture, {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}")
        report = warm_start(model, tokenizer, settings, log=log)
        log(f"[llama] warm start done in {report['seconds']}s, final loss {report['final_loss']:.4f}")
        figures = measure_groups(model, tokenizer, settings)
        log(f"[llama] groups of {settings.check_samples} at T = 1: {describe(figures)}")
        check_groups(figures)  # before anything is cached
        report.update(parameters=n_params, settings=asdict(settings), groups=figures)
        model.save_pretrained(staging / "model")
        tokenizer.save_pretrained(staging / "model")
        levels = list(settings.task_levels)
        rng = random.Random(settings.seed + 2)
        _write_parquet(rl_rows(levels, settings.train_prompts, rng, "train"), staging / "data" / "train.parquet")
        test_rows = rl_rows(levels, len(levels) * settings.test_prompts_per_level, rng, "test")
        _write_parquet(test_rows, staging / "data" / "test.parquet")
        (staging / "warm_start.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "llama", build_into, log)
    return artifacts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="build into this folder instead of the cache")
    parser.add_argument("--print-env", action="store_true", help="print MODEL=... TRAIN=... TEST=... for the shell")
    args = parser.parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.print_env else _log
    artifacts = build_llama(root=Path(args.root) if args.root else None, log=log)
    paths = {"MODEL": artifacts.model_dir, "TRAIN": artifacts.train_file, "TEST": artifacts.test_file}
    for name, path in paths.items():
        print(f"{name}={shlex.quote(str(path))}" if args.print_env else f"{name.lower()}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
