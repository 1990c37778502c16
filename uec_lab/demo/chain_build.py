"""Task v2's tokenizer, warm-started policy and data: built by a recipe, and shipped in the repository.

The study and the quickstart train on *one* base policy whatever machine runs them: the one committed under
``assets/chain_sum/`` (safetensors and parquet, a few MB), listed with the SHA-256 of every file in its
``MANIFEST.json``. A warm start lands on other accuracies on another CPU family, so a policy rebuilt on each
machine would make runs from two machines runs on two tasks.

The recipe that made it stays and is run by CI from an empty cache (``--build``): a byte-level BPE with one token
per digit, a small Qwen2, a supervised warm start on correct chains in random orders (``uec_lab/demo/chain.py``) with
long chains rarer (level weights min(1, 2^-(operands-3))) that stops at the first step whose measured difficulty
ladder meets the contract (``uec_lab/demo/ladder.py``; ``warm_start_until_ladder``). A rebuilt policy is another
machine's policy: it must meet the ladder contract, not equal the shipped weights.

    python -m uec_lab.demo.chain_build               # the shipped artifact: verify its hashes, print its paths
    python -m uec_lab.demo.chain_build --build       # build from scratch into the cache (contract checked)
    python -m uec_lab.demo.chain_build --ship        # build, then replace assets/chain_sum/ (maintainers)
    python -m uec_lab.demo.chain_build --check-ladder  # measure the shipped policy's ladder on this machine
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from uec_lab.demo import chain
from uec_lab.demo.build import (
    DemoArtifacts,
    build_cached,
    build_random_model,
    cache_root,
    pad_examples,
    print_paths,
    train_tokenizer,
)
from uec_lab.demo.build import _write_parquet as write_parquet
from uec_lab.demo.ladder import Ladder, LadderContract
from uec_lab.machine import machine_description

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO_ROOT / "assets" / "chain_sum"
MANIFEST = "MANIFEST.json"
LEVELS = tuple(range(chain.MIN_OPERANDS, chain.MAX_OPERANDS + 1))


class ShippedArtifactError(RuntimeError):
    """The shipped base policy is missing or differs from its manifest."""


@dataclass(frozen=True)
class ChainSettings:
    """Every setting that changes what gets built (the cache key is a hash of these)."""

    build_version: int = 1
    seed: int = 7
    vocab_size: int = 300
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    warm_start_steps: int = 4000  # the schedule's length; the warm start stops at the first step whose ladder meets
    warm_start_batch: int = 64  # the contract, which is sooner
    warm_start_lr: float = 3e-3  # peak: linear warm-up, then cosine decay to 0 at warm_start_steps
    warm_start_warmup: int = 100
    check_from: int = 500  # quick ladder checks (check_prompts x check_samples per level) every check_every steps
    check_every: int = 100
    check_prompts: int = 16
    check_samples: int = 4
    weight_from: int = 3  # level weights min(1, 2^-(operands - weight_from))
    ladder_prompts_per_level: int = 48
    ladder_samples: int = 8
    train_prompts: int = 2048
    test_prompts_per_level: int = 16  # validation during training (test.parquet)
    eval_prompts_per_level: int = 64  # held-out evaluation of the study (eval.parquet)
    # a hard level needs 4 of the 384 ladder samples right (1 %): one lucky success made 6- and 8-operand chains
    # "hard" in the first build, though neither method nor warm start can learn from a 0.3 % success rate
    contract: LadderContract = LadderContract(hard_min_successes=4)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _log(message: str) -> None:
    print(message, flush=True)


def prompt_text(question: str) -> str:
    """The chat prompt, as CHAT_TEMPLATE renders one user turn with the generation prompt (checked in tests)."""
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def level_weights(settings: ChainSettings) -> list[float]:
    return [min(1.0, 2.0 ** -(level - settings.weight_from)) for level in LEVELS]


# ---- tokenizer and warm start ----------------------------------------------------------------------------------


def build_tokenizer(settings: ChainSettings):
    """A byte-level BPE trained on task text, one token per digit, with the ChatML special tokens."""
    rng = random.Random(settings.seed)
    corpus = []
    for _ in range(2000):
        question, operands = chain.problem(rng.choice(LEVELS), rng)
        corpus.append(f"user\n{question}\nassistant\n{chain.chain_text(operands, rng)}")
    return train_tokenizer(corpus, settings.vocab_size)


def warm_start_batch(tokenizer, rng: random.Random, settings: ChainSettings) -> dict:
    """One supervised batch of fresh problems, levels drawn with ``level_weights``, each with one correct chain
    in a random order: right-padded ids and mask, labels on the response only (-100 elsewhere).

    Levels are mixed within a batch: with one level per batch the policy stalled before it learned to copy
    operands (measured while the task was designed)."""
    prompts, responses = [], []
    for _ in range(settings.warm_start_batch):
        question, operands = chain.problem(rng.choices(LEVELS, level_weights(settings))[0], rng)
        prompts.append(prompt_text(question))
        responses.append(chain.chain_text(operands, rng) + tokenizer.eos_token)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    return pad_examples([(p + r, len(p)) for p, r in zip(prompt_ids, response_ids)], tokenizer.pad_token_id)


def learning_rate(step: int, settings: ChainSettings) -> float:
    """Linear warm-up to ``warm_start_lr``, then cosine decay to 0 at ``warm_start_steps`` (step is 1-based)."""
    if step <= settings.warm_start_warmup:
        return settings.warm_start_lr * step / settings.warm_start_warmup
    progress = (step - settings.warm_start_warmup) / max(1, settings.warm_start_steps - settings.warm_start_warmup)
    return settings.warm_start_lr * 0.5 * (1 + math.cos(math.pi * progress))


def warm_start_until_ladder(model, tokenizer, settings: ChainSettings, log=_log) -> tuple[dict, Ladder]:
    """Supervised warm start that stops once the policy has the difficulty ladder the task needs.

    Short chains are learned before long ones, so during the warm start the levels pass from unsolved through
    medium to easy, shortest first. Where on this path a given number of steps lands differs between CPU
    families; the build therefore measures a quick ladder every ``check_every`` steps (from ``check_from``) and,
    when it meets the contract, the full one, and stops at the first full ladder that meets it. A build that
    reaches ``warm_start_steps`` without one fails with the last figures.
    """
    import torch

    rng = random.Random(settings.seed + 1)
    # the quick ladder only screens: with 64 samples a level, a hard level's minimum of successes is the full one's
    screening = replace(settings, contract=replace(settings.contract, hard_min_successes=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.warm_start_lr, weight_decay=0.0)
    started = time.time()
    last = None
    for step in range(1, settings.warm_start_steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        loss = model(**warm_start_batch(tokenizer, rng, settings)).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0:
            log(f"[chain]   warm start step {step}/{settings.warm_start_steps}  loss {loss.item():.4f}  "
                f"({time.time() - started:.0f}s)")  # fmt: skip
        if step < settings.check_from or step % settings.check_every:
            continue
        model.eval()
        quick = measure_ladder(
            model, tokenizer, screening, prompts=settings.check_prompts, samples=settings.check_samples
        )
        log(f"[chain]   step {step}, quick ladder: {quick.describe()}")
        if not quick.problems():
            log("[chain]   the quick ladder has every band: measuring the full ladder")
            last = measure_ladder(model, tokenizer, settings)
            if not last.problems():
                model.eval()
                report = {"steps": step, "final_loss": loss.item(), "seconds": round(time.time() - started, 1)}
                return report, last
            log(f"[chain]   full ladder: {last.describe()}; training on")
        model.train()
    model.eval()
    last = last or measure_ladder(model, tokenizer, settings)
    report = {"steps": settings.warm_start_steps, "final_loss": loss.item(), "seconds": round(time.time() - started, 1)}
    return report, last


# ---- the ladder -------------------------------------------------------------------------------------------------


def measure_ladder(
    model, tokenizer, settings: ChainSettings, seed: int = 99, log=None, prompts: int = 0, samples: int = 0
) -> Ladder:
    """Greedy and sampled (T = 1, no top-k, top_p = 1) accuracy of every level on fresh problems, graded by the
    training reward, sorted into the bands of ``settings.contract`` (``prompts`` x ``samples`` per level, the
    settings' ladder sizes by default)."""
    import torch

    from uec_lab.demo.reward import compute_score

    rng = random.Random(seed)
    torch.manual_seed(seed)
    greedy, sampled, successes = {}, {}, {}
    tokenizer.padding_side = "left"
    for level in LEVELS:
        problems = [chain.problem(level, rng) for _ in range(prompts or settings.ladder_prompts_per_level)]
        batch = tokenizer([prompt_text(q) for q, _ in problems], return_tensors="pt", padding=True)
        common = {
            "max_new_tokens": max_response_tokens(level),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        with torch.no_grad():
            first = model.generate(**batch, do_sample=False, **common)
            drawn = model.generate(
                **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                num_return_sequences=samples or settings.ladder_samples, **common,
            )  # fmt: skip
        width = batch["input_ids"].shape[1]

        def correct(outputs, repeat):
            texts = tokenizer.batch_decode(outputs[:, width:], skip_special_tokens=True)
            answers = [chain.number_text(chain.answer_of(ops)) for _, ops in problems for _ in range(repeat)]
            return sum(compute_score(chain.DATA_SOURCE, text, answer)["acc"] for text, answer in zip(texts, answers))

        greedy[level] = correct(first, 1) / len(problems)
        successes[level] = int(correct(drawn, samples or settings.ladder_samples))
        sampled[level] = successes[level] / (len(problems) * (samples or settings.ladder_samples))
        if log is not None:
            log(f"[chain]   {level} operands: greedy {greedy[level]:.2f}, T=1 {sampled[level]:.2f}")
    drawn_per_level = len(problems) * (samples or settings.ladder_samples)
    return Ladder(settings.contract, greedy, sampled, successes, drawn_per_level)


def max_response_tokens(level: int) -> int:
    """Room for a correct chain of ``level`` operands (12 tokens a line, the answer line and EOS) plus slack."""
    return 12 * (level - 1) + 8 + 8


# ---- data -------------------------------------------------------------------------------------------------------


def band_data_source(band: str) -> str:
    """Validation rows name their band in the data source, so verl reports accuracy per band."""
    return f"{chain.DATA_SOURCE}/{band}"


def rl_rows(levels, count: int, rng: random.Random, split: str, bands: dict[int, str], by_band: bool) -> list[dict]:
    """``count`` rows cycling over ``levels``; every row's extra_info carries its level and band (the trainer
    splits the rollout's entropy by band); with ``by_band`` the data source names the band too."""
    rows = []
    for index in range(count):
        level = levels[index % len(levels)]
        question, operands = chain.problem(level, rng)
        rows.append(
            {
                "data_source": band_data_source(bands[level]) if by_band else chain.DATA_SOURCE,
                "prompt": [{"role": "user", "content": question}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": chain.number_text(chain.answer_of(operands))},
                "extra_info": {"split": split, "index": index, "level": level, "band": bands[level]},
            }
        )
    return rows


def write_task_data(ladder: Ladder, settings: ChainSettings, data_dir: Path) -> None:
    """Training, validation and held-out evaluation rows over the task's levels (independent random problems)."""
    levels = ladder.task_levels()
    rng = random.Random(settings.seed + 2)
    write_parquet(
        rl_rows(levels, settings.train_prompts, rng, "train", ladder.bands, False), data_dir / "train.parquet"
    )
    for name, per_level in (("test", settings.test_prompts_per_level), ("eval", settings.eval_prompts_per_level)):
        ordered = [level for level in levels for _ in range(per_level)]
        rows = rl_rows(ordered, len(ordered), rng, name, ladder.bands, True)
        write_parquet(rows, data_dir / f"{name}.parquet")


# ---- build, ship, verify ---------------------------------------------------------------------------------------


def initial_policy(settings: ChainSettings):
    """The tokenizer and the randomly initialised policy every warm start of ``settings`` begins from (seeded)."""
    import torch

    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    torch.manual_seed(settings.seed)
    tokenizer = build_tokenizer(settings)
    return tokenizer, build_random_model(tokenizer, settings)


def build_chain(settings: ChainSettings = ChainSettings(), root: Path | None = None, log=_log) -> DemoArtifacts:
    """Build (or reuse from the cache) task v2 from scratch on this machine; the ladder contract is checked."""
    artifacts = DemoArtifacts(Path(root) if root is not None else cache_root() / f"chain-{settings.key()}")

    def build_into(staging: Path) -> None:
        tokenizer, model = initial_policy(settings)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"[chain] policy: Qwen2 architecture, {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}")
        report, ladder = warm_start_until_ladder(model, tokenizer, settings, log=log)
        log(f"[chain] warm start stopped after {report['steps']} steps ({report['seconds']}s)")
        log(f"[chain] ladder: {ladder.describe()}")
        ladder.check()  # a ladder without its bands fails the build here, before anything is cached
        report.update(ladder=ladder.to_json(), parameters=n_params, settings=asdict(settings))
        report["machine"] = machine_description()
        model.save_pretrained(staging / "model")
        tokenizer.save_pretrained(staging / "model")
        write_task_data(ladder, settings, staging / "data")
        (staging / "warm_start.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "chain", build_into, log)
    log(f"[chain] task levels {artifacts.ladder().describe_task()} (in {artifacts.root})")
    return artifacts


def warm_start_to_step(
    step: int, out: Path, settings: ChainSettings = ChainSettings(), log=_log
) -> tuple[dict, Ladder]:
    """For pilots of where the warm start should stop: the build's warm start (same seed, batches and schedule)
    stopped at ``step`` whatever its ladder, the full ladder measured against the task's contract (reported, not
    required), the policy saved to ``out``/model with the ladder in ``out``/ladder.json. Nothing is cached or
    shipped."""
    if not 1 <= step <= settings.warm_start_steps:
        raise SystemExit(f"error: --stop-at-step {step}: give a step in 1..{settings.warm_start_steps} (the schedule)")
    tokenizer, model = initial_policy(settings)
    anything = LadderContract(min_easy=0, min_medium=0, min_hard=0)  # the first check (at ``step``) stops it
    stopped = replace(settings, check_from=step, check_every=step, contract=anything)
    report, _ = warm_start_until_ladder(model, tokenizer, stopped, log=log)
    ladder = measure_ladder(model, tokenizer, settings)
    log(f"[chain] stopped at step {report['steps']}; ladder: {ladder.describe()}")
    for problem in ladder.problems():
        log(f"[chain]   not the task's contract: {problem}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    report.update(ladder=ladder.to_json(), machine=machine_description())
    (out / "ladder.json").write_text(json.dumps(report, indent=2))
    return report, ladder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listed_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: Path) -> dict:
    files = {str(p.relative_to(root)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in _listed_files(root)}
    manifest = {"task": chain.DATA_SOURCE, "files": files, "total_bytes": sum(f["bytes"] for f in files.values())}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def verify_shipped(root: Path = SHIPPED_DIR) -> DemoArtifacts:
    """The shipped artifact, after checking every file against the SHA-256 its manifest records."""
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise ShippedArtifactError(
            f"{manifest_file} is missing: the shipped base policy of task v2 is not in this checkout "
            "(a partial clone or a deleted folder); restore it with `git checkout -- assets/chain_sum`"
        )
    manifest = json.loads(manifest_file.read_text())
    problems = []
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{name} differs from its recorded SHA-256")
    extra = {str(p.relative_to(root)) for p in _listed_files(root)} - set(manifest["files"])
    problems += [f"{name} is not in the manifest" for name in sorted(extra)]
    if problems:
        raise ShippedArtifactError(
            f"the shipped base policy in {root} does not match {MANIFEST}: " + "; ".join(problems)
            + ". Restore it with `git checkout -- assets/chain_sum` (or rebuild and re-ship with --ship)"
        )  # fmt: skip
    return DemoArtifacts(root)


def ship(artifacts: DemoArtifacts, target: Path = SHIPPED_DIR, log=_log) -> dict:
    """Replace ``target`` with a copy of a built artifact (model weights as safetensors) and its manifest."""
    staging = Path(tempfile.mkdtemp(prefix=".ship-", dir=target.parent if target.parent.exists() else None))
    try:
        for name in ("model", "data"):
            shutil.copytree(artifacts.root / name, staging / name)
        shutil.copy2(artifacts.report_file, staging / "warm_start.json")
        manifest = write_manifest(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log(f"[chain] shipped {manifest['total_bytes'] / 1e6:.2f} MB to {target}")
    return manifest


def check_ladder_here(artifacts: DemoArtifacts, settings: ChainSettings = ChainSettings(), log=_log) -> Ladder:
    """Measure the shipped policy's ladder on this machine and check it against the contract."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    model = AutoModelForCausalLM.from_pretrained(artifacts.model_dir)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(artifacts.model_dir)
    return measure_ladder(model, tokenizer, settings, log=log).check()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--build", action="store_true", help="build from scratch into the cache (contract checked)")
    mode.add_argument("--ship", action="store_true", help="build, then replace assets/chain_sum/ with the result")
    mode.add_argument("--check-ladder", action="store_true", help="measure the shipped policy's ladder here")
    mode.add_argument(
        "--stop-at-step", type=int, metavar="N", help="pilots: the warm start stopped at step N, saved to --root"
    )
    parser.add_argument("--root", help="with --build or --ship: build into this folder instead of the cache")
    parser.add_argument("--print-env", action="store_true", help="print DEMO_MODEL=... DEMO_TRAIN=... lines")
    args = parser.parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.print_env else _log
    if args.stop_at_step is not None:
        if not args.root:
            parser.error("--stop-at-step needs --root DIR (where the policy and its ladder go)")
        warm_start_to_step(args.stop_at_step, Path(args.root), log=log)
        return 0
    if args.build or args.ship:
        artifacts = build_chain(root=Path(args.root) if args.root else None, log=log)
        if args.ship:
            ship(artifacts, log=log)
            artifacts = verify_shipped()
    else:
        artifacts = verify_shipped()
        log(f"[chain] shipped base policy verified ({SHIPPED_DIR.relative_to(REPO_ROOT)}, {MANIFEST})")
        if args.check_ladder:
            ladder = check_ladder_here(artifacts, log=log)
            log(f"[chain] ladder on this machine: {ladder.describe()}")
    print_paths(artifacts, args.print_env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
