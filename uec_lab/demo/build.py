"""The first CPU task (`--task digits`): a tiny tokenizer, a small Qwen2 policy and a digit-sum task, built offline.

UEC-RL is about prompts that a policy never solves at the base temperature. For that situation to exist on a
laptop, the demo policy is warm-started so that it masters short sums, is unreliable on medium ones and rarely
right on long ones (the difficulty ladder of docs/design.md, "CPU default task: task v2, carry-less chains"):

* prompt  ``What is 3 + 8 + 1?`` with ``level + 1`` single-digit operands (level 1 = two operands);
* answer  ``#### 12``; reward 1 for the exact integer after the last ``####`` (``uec_lab/demo/reward.py``);
* warm start: supervised next-token loss on the answer, with level weights min(1, 2^-(operands-5)) so that long
  sums are rare but not absent (left out entirely, exploration at T'=1.2 cannot rescue them);
* ladder: every level's greedy and sampled accuracy is measured on the built policy and sorted into easy, medium
  and hard bands (``uec_lab/demo/ladder.py``); the task's levels are the ones that landed in the bands on this
  machine, and a build whose ladder lacks a band fails with the figures.

Everything is cached under ``$UEC_CACHE_DIR`` (default ``~/.cache/uec-rl``) keyed by the build settings, so a
second run starts in seconds. ``python -m uec_lab.demo.build`` builds (or reuses) and prints the paths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from uec_lab.demo.ladder import Ladder, LadderContract

DATA_SOURCE = "uec_demo/digit_sum"  # training rows; validation rows carry their band: uec_demo/digit_sum/<band>
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# ChatML, as used by the Qwen2 family; the assistant turn is opened by add_generation_prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MAX_LEVEL = 15  # 16 operands


@dataclass(frozen=True)
class DemoSettings:
    """Every setting that changes what gets built (the cache key is a hash of these)."""

    build_version: int = 2  # bumped when the build changes in a way no other setting shows
    seed: int = 7
    vocab_size: int = 400
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    warm_start_steps: int = 1500
    warm_start_batch: int = 64
    warm_start_lr: float = 3e-3
    warm_start_warmup: int = 100
    ladder_prompts_per_level: int = 64  # fresh problems per level to measure the ladder on
    ladder_samples: int = 8  # samples per problem at T = 1 (and one greedy answer)
    train_prompts: int = 2048  # over the task's levels (chosen from the measured ladder)
    test_prompts_per_level: int = 16  # validation during training (test.parquet)
    eval_prompts_per_level: int = 48  # held-out evaluation of the reproduction study (eval.parquet)
    contract: LadderContract = LadderContract()

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DemoArtifacts:
    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def test_file(self) -> Path:
        return self.root / "data" / "test.parquet"

    @property
    def eval_file(self) -> Path:
        return self.root / "data" / "eval.parquet"

    @property
    def report_file(self) -> Path:
        return self.root / "warm_start.json"

    def ladder(self) -> Ladder:
        """The difficulty ladder measured when this demo was built."""
        return Ladder.from_json(json.loads(self.report_file.read_text())["ladder"])


def _log(message: str) -> None:
    print(message, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("UEC_CACHE_DIR", Path.home() / ".cache" / "uec-rl"))


# ---- the task ------------------------------------------------------------------------------------------------


def digit_sum_problem(level: int, rng: random.Random) -> tuple[str, int]:
    operands = [rng.randint(0, 9) for _ in range(level + 1)]
    return "What is " + " + ".join(map(str, operands)) + "?", sum(operands)


def warm_start_level_weights() -> list[float]:
    # min(1, 2^-(operands-5)): levels with up to 5 operands are common, each further operand halves the weight.
    return [min(1.0, 2.0 ** -((level + 1) - 5)) for level in range(1, MAX_LEVEL + 1)]


def answer_text(total: int) -> str:
    return f"#### {total}"


def band_data_source(band: str) -> str:
    """Validation rows name their band in the data source, so verl reports accuracy per band."""
    return f"{DATA_SOURCE}/{band}"


def rl_rows(levels, count: int, rng: random.Random, split: str, bands: dict[int, str] | None = None) -> list[dict]:
    """``count`` rows cycling over ``levels``; with ``bands`` each row's data source names its level's band."""
    rows = []
    for index in range(count):
        level = levels[index % len(levels)]
        question, total = digit_sum_problem(level, rng)
        extra = {"split": split, "index": index, "level": level}
        if bands is not None:
            extra["band"] = bands[level]
        rows.append(
            {
                "data_source": DATA_SOURCE if bands is None else band_data_source(bands[level]),
                "prompt": [{"role": "user", "content": question}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(total)},
                "extra_info": extra,
            }
        )
    return rows


# ---- tokenizer and model ---------------------------------------------------------------------------------------


def build_tokenizer(out_dir, vocab_size: int = 400, seed: int = 7):
    """Train a byte-level BPE (one token per digit) on synthetic task text and save it as an HF tokenizer."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(3000):
        question, total = digit_sum_problem(rng.randint(1, MAX_LEVEL), rng)
        corpus.append(f"user\n{question}\nassistant\n{answer_text(total)}")
    corpus.append('Let\'s think step by step and output the final answer after "####". \\boxed{} system')

    wrapped = train_tokenizer(corpus, vocab_size)
    if out_dir is not None:
        wrapped.save_pretrained(out_dir)
    return wrapped


def train_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE trained on ``corpus``, one token per digit, with the ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def build_random_model(tokenizer, settings: DemoSettings = DemoSettings()):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(settings.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def encode_example(tokenizer, question: str, answer: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer + eos, and where the answer starts (the loss covers the answer only)."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + answer_ids, len(prompt_ids)


def supervised_warm_start(model, settings, next_batch, log=_log) -> dict:
    """The warm-start loop both demos share: AdamW, linear warm-up then cosine decay, gradient clip 1.0.

    ``next_batch(step)`` returns the keyword arguments of one forward pass, ``labels`` included (-100 outside the
    answer). ``settings`` provides ``warm_start_steps``, ``warm_start_lr`` and ``warm_start_warmup``.
    """
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.warm_start_lr, weight_decay=0.0)

    def lr_at(step):
        if step < settings.warm_start_warmup:
            return settings.warm_start_lr * (step + 1) / settings.warm_start_warmup
        progress = (step - settings.warm_start_warmup) / max(1, settings.warm_start_steps - settings.warm_start_warmup)
        return settings.warm_start_lr * 0.5 * (1 + math.cos(math.pi * progress))

    model.train()
    started = time.time()
    loss_value = float("nan")
    for step in range(settings.warm_start_steps):
        inputs = next_batch(step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = loss.item()
        if step % 100 == 0 or step == settings.warm_start_steps - 1:
            elapsed = time.time() - started
            left = elapsed / (step + 1) * (settings.warm_start_steps - step - 1)
            log(
                f"  warm start step {step + 1}/{settings.warm_start_steps}  loss {loss_value:.4f}"
                f"  ({elapsed:.0f}s, about {left:.0f}s left)"
            )
    model.eval()
    return {"final_loss": loss_value, "seconds": round(time.time() - started, 1)}


def digit_sum_batch(tokenizer, rng: random.Random, levels, weights, size: int) -> dict:
    """One supervised batch of fresh digit sums, levels drawn with ``weights``: right-padded ids and mask, and
    labels on the answer only (-100 elsewhere)."""
    examples = []
    for _ in range(size):
        question, total = digit_sum_problem(rng.choices(levels, weights)[0], rng)
        examples.append(encode_example(tokenizer, question, answer_text(total)))
    return pad_examples(examples, tokenizer.pad_token_id)


def pad_examples(examples: list[tuple[list[int], int]], pad_token_id: int) -> dict:
    """(token ids, where the answer starts) per example -> right-padded ids and mask, labels on the answer only."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_token_id)
    labels = torch.full((len(examples), width), -100)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, answer_start) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, answer_start : len(ids)] = torch.tensor(ids[answer_start:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def warm_start(model, tokenizer, settings: DemoSettings, log=_log) -> dict:
    """Supervised warm start on the digit-sum ladder, loss on the answer only."""
    rng = random.Random(settings.seed + 1)
    levels = list(range(1, MAX_LEVEL + 1))
    weights = warm_start_level_weights()

    def next_batch(_step):
        return digit_sum_batch(tokenizer, rng, levels, weights, settings.warm_start_batch)

    return supervised_warm_start(model, settings, next_batch, log)


def measure_ladder(model, tokenizer, settings: DemoSettings, seed: int = 99) -> Ladder:
    """Greedy and sampled (T = 1, no top-k, top_p = 1) accuracy of every level on fresh problems, graded by the
    training reward, sorted into the bands of ``settings.contract``."""
    import torch

    from uec_lab.demo.reward import compute_score

    rng = random.Random(seed)
    torch.manual_seed(seed)
    greedy, sampled, successes = {}, {}, {}
    tokenizer.padding_side = "left"
    for level in range(1, MAX_LEVEL + 1):
        problems = [digit_sum_problem(level, rng) for _ in range(settings.ladder_prompts_per_level)]
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q, _ in problems
        ]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        common = {"max_new_tokens": 8, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        with torch.no_grad():
            first = model.generate(**batch, do_sample=False, **common)
            drawn = model.generate(
                **batch,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                num_return_sequences=settings.ladder_samples,
                **common,
            )
        width = batch["input_ids"].shape[1]

        def correct(outputs, repeat):
            texts = tokenizer.batch_decode(outputs[:, width:], skip_special_tokens=True)
            totals = [total for _, total in problems for _ in range(repeat)]
            return sum(compute_score(DATA_SOURCE, text, str(total))["acc"] for text, total in zip(texts, totals))

        greedy[level] = correct(first, 1) / len(problems)
        successes[level] = int(correct(drawn, settings.ladder_samples))
        sampled[level] = successes[level] / (len(problems) * settings.ladder_samples)
    return Ladder(settings.contract, greedy, sampled, successes, len(problems) * settings.ladder_samples)


# ---- build with cache ------------------------------------------------------------------------------------------


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def build_cached(artifacts: DemoArtifacts, label: str, build_into, log=_log) -> bool:
    """Run ``build_into(staging_dir)`` unless ``artifacts`` already exist, then publish the folder atomically.

    The build goes to a staging folder beside the cache entry and is renamed into place only when complete, so an
    interrupted build never leaves a half-built entry that a later run would reuse. Returns whether it built.
    """
    root = artifacts.root
    if all(path.exists() for path in (artifacts.report_file, artifacts.train_file, artifacts.test_file)):
        log(f"[{label}] reusing cached model and data in {root}")
        return False
    log(f"[{label}] building model and data in {root} (cached for later runs)")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
    try:
        build_into(staging)
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


def build_demo(settings: DemoSettings = DemoSettings(), root: Path | None = None, log=_log) -> DemoArtifacts:
    """Build (or reuse from the cache) the demo model and data; returns where they are."""
    import torch

    artifacts = DemoArtifacts(Path(root) if root is not None else cache_root() / f"demo-{settings.key()}")

    def build_into(staging: Path) -> None:
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
        tokenizer = build_tokenizer(None, settings.vocab_size, settings.seed)
        model = build_random_model(tokenizer, settings)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"[demo] policy: Qwen2 architecture, {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}")
        report = warm_start(model, tokenizer, settings, log=log)
        log(f"[demo] warm start done in {report['seconds']}s, final loss {report['final_loss']:.4f}")
        log("[demo] measuring the difficulty ladder (greedy and T = 1 accuracy of every level)")
        ladder = measure_ladder(model, tokenizer, settings)
        log(f"[demo] ladder: {ladder.describe()}")
        ladder.check()  # a ladder without its bands fails the build here, before anything is cached
        report["ladder"] = ladder.to_json()
        report["parameters"] = n_params
        report["settings"] = asdict(settings)
        model.save_pretrained(staging / "model")
        tokenizer.save_pretrained(staging / "model")
        write_task_data(ladder, settings, staging / "data")
        (staging / "warm_start.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "demo", build_into, log)
    ladder = artifacts.ladder()
    log(f"[demo] task levels {ladder.describe_task()} (cached in {artifacts.root})")
    return artifacts


def write_task_data(ladder: Ladder, settings: DemoSettings, data_dir: Path) -> None:
    """Training, validation and held-out evaluation rows over the task's levels (disjoint random problems)."""
    levels = ladder.task_levels()
    rng = random.Random(settings.seed + 2)
    _write_parquet(rl_rows(levels, settings.train_prompts, rng, "train"), data_dir / "train.parquet")
    for name, per_level in (("test", settings.test_prompts_per_level), ("eval", settings.eval_prompts_per_level)):
        ordered = [level for level in levels for _ in range(per_level)]
        _write_parquet(rl_rows(ordered, len(ordered), rng, name, ladder.bands), data_dir / f"{name}.parquet")


def run_cli(description: str, build, argv=None) -> int:
    """The command line both demo builders share: build (or reuse) and print where the model and data are."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", help="build into this folder instead of the cache")
    parser.add_argument(
        "--print-env", action="store_true", help="print shell assignments DEMO_MODEL=... DEMO_TRAIN=... DEMO_TEST=..."
    )
    args = parser.parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.print_env else _log
    artifacts = build(root=Path(args.root) if args.root else None, log=log)
    print_paths(artifacts, args.print_env)
    return 0


def print_paths(artifacts: DemoArtifacts, as_env: bool) -> None:
    """Where a demo's model and data are: shell assignments (``--print-env``, read by run_scripts/demo_env.sh)."""
    if as_env:
        print(
            f"DEMO_MODEL={artifacts.model_dir}\nDEMO_TRAIN={artifacts.train_file}\nDEMO_TEST={artifacts.test_file}\n"
            f"DEMO_REPORT={artifacts.report_file}"
        )
    else:
        print(f"model: {artifacts.model_dir}\ntrain: {artifacts.train_file}\ntest:  {artifacts.test_file}")


def main(argv=None) -> int:
    return run_cli(__doc__.splitlines()[0], build_demo, argv)


if __name__ == "__main__":
    sys.exit(main())
