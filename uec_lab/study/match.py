"""Matched-generation GRPO: measure UEC-RL's generated samples per step and write the task's matched n.

    python -m uec_lab.study match --out STUDY [--method uec] [--write | --to CONFIG_DIR]

UEC-RL generates P·G regular samples a step plus G′ for every difficult prompt. The matched GRPO (algo=grpo_matched)
draws more samples per prompt instead, so that both generate as many samples a step:
n = round(mean generated samples per step / P), the mean over every step of every finished run of ``--method`` in
the study folder (or its compact records). The result is a task's file, task_algo/<task>_grpo_matched.yaml, which
says in its comments what it was measured on. The micro-batch sizes are set to divisors of the new mini-batch (verl
requires the mini-batch to be a multiple of the micro-batch), no larger than the study's, and the configuration
with the new file is composed and validated before anything is written.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from uec_lab.study.plan import METHODS
from uec_lab.study.report_v2 import finished_runs, metric_rows
from uec_recipe.main_uec import dry_run_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "uec_recipe" / "config"
GENERATED = ("uec/regular_samples", "uec/exploration_samples")
MICRO_KEYS = (
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
)


@dataclass
class Matched:
    task: str  # the task config group, e.g. chain_sum
    method: str
    runs: dict[int, float]  # seed -> mean generated samples per step
    steps: int  # steps counted over all runs
    prompts: int  # P, data.train_batch_size
    samples: int  # G, actor_rollout_ref.rollout.n
    mini_batch: int  # prompts per mini-batch (actor.ppo_mini_batch_size)
    micro: dict[str, int]  # the study's micro-batch sizes (rows), by key

    @property
    def mean(self) -> float:
        return statistics.fmean(self.runs.values())

    @property
    def n(self) -> int:
        return max(self.samples, round(self.mean / self.prompts))

    def micro_sizes(self) -> dict[str, int]:
        """Each micro-batch size as the largest divisor of the matched mini-batch (rows) not above the study's."""
        rows = self.mini_batch * self.n
        return {key: max(d for d in range(1, min(size, rows) + 1) if rows % d == 0) for key, size in self.micro.items()}

    def yaml(self, source: str) -> str:
        spread = f" ± {statistics.stdev(self.runs.values()):.1f} (sd over runs)" if len(self.runs) > 1 else ""
        seeds = ", ".join(f"seed {seed}: {mean:.1f}" for seed, mean in self.runs.items())
        lines = [
            "# @package _global_",
            f'# Matched-generation GRPO on {self.task} (algo=grpo_matched; docs/baselines.md, "Controls").',
            f"# Measured by `python -m uec_lab.study match` on {METHODS[self.method].label} ({self.method})",
            f"# in {source}:",
            f"# {self.mean:.1f}{spread} generated samples per step over {len(self.runs)} run(s) and {self.steps} steps",
            f"# ({seeds}), with P = {self.prompts} prompts x G = {self.samples} regular samples a step, plus G' per",
            f"# difficult prompt. n = round({self.mean:.1f} / {self.prompts}) = {self.n}. Micro-batches: the largest",
            f"# divisors of the mini-batch ({self.mini_batch} prompts x {self.n} = {self.mini_batch * self.n} rows)",
            "# not above the study's.",
            "actor_rollout_ref:",
        ]
        micro = self.micro_sizes()
        tree: dict[str, dict[str, int]] = {"actor": {}, "rollout": {"n": self.n}, "ref": {}}
        for key, size in micro.items():
            _, group, name = key.split(".")
            tree[group][name] = size
        for group in ("actor", "rollout", "ref"):
            lines.append(f"  {group}:")
            lines += [f"    {name}: {value}" for name, value in tree[group].items()]
        return "\n".join(lines) + "\n"


def measure(folder: Path, method: str):
    """(task group, seed -> mean generated samples per step, steps counted, the method's configuration in the study,
    composed and checked as its runs were)."""
    if not (folder / "study.json").is_file():
        raise SystemExit(f"error: {folder} has no study.json: not a study folder or its records")
    if method not in METHODS or not METHODS[method].preset.startswith("uec"):
        raise SystemExit(f"error: --method {method}: give a UEC-RL method of the study (e.g. uec, uec_release)")
    runs = finished_runs(folder).get(method, {})
    if not runs:
        raise SystemExit(f"error: {folder} has no finished {method} run to measure")
    study = json.loads((folder / "study.json").read_text())
    config = dry_run_config([f"algo={METHODS[method].preset}", *study["overrides"], *METHODS[method].overrides])
    means, steps = {}, 0
    for seed, run in runs.items():
        rows = [r for r in metric_rows(run) if r.get("step", 0) >= 1]
        counted = [r[GENERATED[0]] + r.get(GENERATED[1], 0) for r in rows if GENERATED[0] in r]
        if not counted:
            raise SystemExit(f"error: {run} logged no {GENERATED[0]}: not a UEC-RL run, or its record predates it")
        means[seed] = statistics.fmean(counted)
        steps += len(counted)
    task = next(o.split("=", 1)[1] for o in study["overrides"] if o.startswith("task="))
    return task, means, steps, config


def matched(folder: Path, method: str = "uec") -> Matched:
    task, means, steps, config = measure(folder, method)
    return Matched(
        task=task,
        method=method,
        runs=means,
        steps=steps,
        prompts=OmegaConf.select(config, "data.train_batch_size"),
        samples=OmegaConf.select(config, "actor_rollout_ref.rollout.n"),
        mini_batch=OmegaConf.select(config, "actor_rollout_ref.actor.ppo_mini_batch_size"),
        micro={key: OmegaConf.select(config, key) for key in MICRO_KEYS},
    )


def write(result: Matched, text: str, study_overrides: list[str], config_dir: Path) -> Path:
    """Write task_algo/<task>_grpo_matched.yaml under ``config_dir`` after checking that the study's configuration
    with algo=grpo_matched composes and validates with it (verl's batch checks included); an existing file is
    replaced only once the new one has passed."""
    target = config_dir / "task_algo" / f"{result.task}_grpo_matched.yaml"
    staging = Path(tempfile.mkdtemp(prefix="grpo_matched_"))
    try:
        (staging / "task_algo").mkdir()
        (staging / "task_algo" / target.name).write_text(text)
        search = f"hydra.searchpath=[pkg://verl.trainer.config,file://{staging}]"
        config = dry_run_config(["algo=grpo_matched", *study_overrides, search])
    except Exception as error:  # composition or validation: nothing written
        raise SystemExit(f"error: the matched configuration does not validate, nothing written: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if config.actor_rollout_ref.rollout.n != result.n:
        raise SystemExit(f"error: a later setting overrides the matched n ({config.actor_rollout_ref.rollout.n})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target


def main(folder: Path, method: str, to: Path | None) -> int:
    result = matched(folder, method)
    text = result.yaml(str(folder))
    print(text, end="")
    if to is None:
        print("[study] printed only: --write puts it in the recipe's config, --to DIR in another config folder")
        return 0
    study = json.loads((folder / "study.json").read_text())
    path = write(result, text, study["overrides"], to)
    print(f"[study] wrote {path} (n = {result.n}; {result.mean:.1f} generated samples a step)")
    return 0
