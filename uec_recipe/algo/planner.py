"""The bookkeeping of one UEC-RL step as a plain object: every decision of the step, none of its I/O.

``UECPlanner`` is driven by plain values — the keys, tags, uids, accuracies and advantages of the rows a generation
round produced — and answers the step's questions in the order of the numbered algorithm (docs/algorithm.md,
"The step"; paper §3):

1. regular rollout — generated and scored by the trainer; the planner receives its rows (``GeneratedRows``)
2. difficult prompts: groups whose every sample has accuracy 0 (``difficult_prompts``)
3. targeted exploration: which prompts get G' more samples at T', how many each (the adaptive budget's share when
   ``exploration.budget=adaptive``), under which fresh uid, and whether now or with the next step's rollout
   (``plan_exploration``); what each exploration found goes into the budget's history (``record_exploration``)
4. advantage within each exploration group — computed by verl's estimator on the fresh uids the plan assigned
5. selective retention, exploration survivors first, then the overlong-positive filter (``retain``)
6. batch buffer: survivors in, evictions past capacity, the oldest whole N0 blocks out to one update
   (``plan_update``)
7. replay: admission of the updated rows (``admit``), and every f_replay steps the rows of the extra update
   (``replay``)

Each stage calls the small functions of ``uec_recipe/algo/`` (difficulty, retention, buffers, exploration_budget);
this module only orders them and holds their state: the two buffers, the replay random stream and update count,
the explorations in flight and the adaptive budget's history. The trainer (``uec_recipe/trainer.py``) does the
generation, TransferQueue reads and writes, updates and pictures, and deletes the keys the planner lets go of.
Nothing here knows about Ray, TransferQueue or verl's trainer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from uec_recipe.algo.buffers import (
    BufferedRow,
    FifoBuffer,
    fifo_capacity,
    select_replay_rows,
    update_pop_size,
    whole_blocks,
)
from uec_recipe.algo.config import UECConfig
from uec_recipe.algo.difficulty import difficult_groups, group_rows
from uec_recipe.algo.exploration_budget import ExplorationBudget
from uec_recipe.algo.retention import (
    admit_to_replay,
    keep_exploration,
    keep_regular,
    overlong_filter_applies,
    overlong_positive,
)


def _per_row(values, name: str, rows: int) -> torch.Tensor:
    """One value per row as a tensor; a tensor keeps its dtype (the retention thresholds compare in it)."""
    tensor = values if isinstance(values, torch.Tensor) else torch.tensor(list(values), dtype=torch.float32)
    if tensor.dim() != 1 or len(tensor) != rows:
        raise ValueError(f"GeneratedRows.{name}: {tuple(tensor.shape)} values for {rows} keys; give one per row")
    return tensor


class GeneratedRows:
    """The rows of one generation round as the planner sees them, in the order the step keeps them.

    ``tags`` are the rows' TransferQueue tags, each with ``response_len`` and ``seq_len``; ``accuracy`` and
    ``advantages`` are per row (the group advantage, computed within each uid); ``accuracy_source`` says whether
    accuracy is the reward's ``acc`` or its score (``uec_recipe/algo/difficulty.py``, ``sequence_accuracy``).
    """

    def __init__(
        self,
        keys: Sequence[str],
        tags: Sequence[dict],
        uids: Sequence[str],
        accuracy,
        advantages,
        accuracy_source: str = "acc",
    ):
        self.keys, self.tags, self.uids = list(keys), list(tags), list(uids)
        for name in ("tags", "uids"):
            if len(getattr(self, name)) != len(self.keys):
                raise ValueError(f"GeneratedRows.{name}: {len(getattr(self, name))} for {len(self.keys)} keys")
        self.accuracy = _per_row(accuracy, "accuracy", len(self.keys))
        self.advantages = _per_row(advantages, "advantages", len(self.keys))
        self.accuracy_source = accuracy_source

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class ExplorationPlan:
    """Stage 3: the difficult prompts to re-sample, one entry per prompt in the order they were found."""

    uids: list[str]  # a fresh uid per prompt: its samples form a group of their own (stage 4)
    sources: list[str]  # the uid of the regular group each one re-samples
    samples: list[int]  # G', or the prompt's share of the adaptive budget
    temperature: float  # T'
    deferred: bool  # pipelined schedule: generated with the next step's regular rollout


@dataclass(frozen=True)
class ExplorationRecord:
    sources: dict[str, str]  # exploration uid -> the regular uid it re-sampled
    metrics: dict


@dataclass(frozen=True)
class Retention:
    """Stage 5: what selective retention kept of this step's rows."""

    kept_exploration: list[BufferedRow]
    kept_regular: list[BufferedRow]
    survivors: list[BufferedRow]  # exploration survivors first, then regular ones, overlong positives removed
    overlong: list[BufferedRow]  # survivors the overlong-positive filter dropped
    discarded: list[str]  # keys of this step's rows that no buffer holds (regular rows first)


@dataclass(frozen=True)
class UpdatePlan:
    """Stage 6: the batch buffer after this step's survivors went in."""

    evicted: list[BufferedRow]  # pushed out past capacity, untrained
    rows: list[BufferedRow]  # the oldest whole N0 blocks, trained on in one update (empty: no update)
    replay_due: bool  # this is a replay step (every f_replay steps)
    trains: bool  # an update or a replay update may run: the trainer needs the device


@dataclass(frozen=True)
class Admission:
    """Stage 7a: the updated rows that enter the replay buffer, and what they push out of it."""

    admitted: list[BufferedRow]
    evicted: list[BufferedRow]


class UECPlanner:
    """The decisions and state of the UEC step (module docstring); ``step`` arguments are verl's global step."""

    def __init__(self, uec: UECConfig, n0: int, max_response_length: int):
        self.uec, self.n0, self.max_response_length = uec, int(n0), int(max_response_length)
        self.batch_buffer = FifoBuffer(fifo_capacity(uec.batch_buffer.capacity_multiple, self.n0))
        self.replay_buffer = FifoBuffer(fifo_capacity(uec.replay.capacity_multiple, self.n0))
        self.replay_rng = random.Random(uec.seed)
        self.replay_updates = 0
        # explorations planned and not yet recorded, by fresh uid: {"key": prompt key, "chance": the budget's
        # estimate (None without the adaptive budget), "found": step the prompt was difficult, "source": its uid}
        self.exploring: dict[str, dict] = {}
        ex = uec.exploration
        self.pipelined = ex.schedule == "pipelined"
        self.exploration_budget = (
            ExplorationBudget(ex.n, ex.budget_floor, ex.budget_cap) if ex.budget == "adaptive" else None
        )

    # ---- 2. difficult prompts -------------------------------------------------------------------------------------

    def difficult_prompts(self, regular: GeneratedRows) -> list[str]:
        """uids of the regular groups whose every sample has accuracy below the threshold, in first-seen order."""
        return difficult_groups(regular.uids, regular.accuracy, self.uec.exploration.difficulty_threshold)

    # ---- 3. targeted exploration --------------------------------------------------------------------------------

    def explores(self, difficult: Sequence[str]) -> bool:
        return bool(self.uec.exploration.enable and difficult)

    def plan_exploration(
        self,
        difficult: Sequence[str],
        prompt_keys: Sequence[str],
        fresh_uids: Sequence[str],
        step: int,
        total_steps: int,
    ) -> ExplorationPlan | None:
        """G' samples at T' for each difficult prompt, under a fresh uid; None when nothing is to be generated.

        ``prompt_keys`` name each prompt across epochs (the adaptive budget's history is kept by them); the
        pipelined schedule defers the round to the next step's rollout, so at the last step it explores nothing.
        """
        if not self.explores(difficult):
            return None
        if not len(difficult) == len(prompt_keys) == len(fresh_uids):
            raise ValueError(
                f"plan_exploration: {len(difficult)} difficult prompts, {len(prompt_keys)} prompt keys and "
                f"{len(fresh_uids)} fresh uids; give one of each per prompt"
            )
        deferred = self.pipelined
        if deferred and step >= total_steps:
            return None  # the last step: no next round would generate it
        if self.exploration_budget is not None:
            allocation = self.exploration_budget.allocate(list(prompt_keys))
            samples, chances = allocation.samples, allocation.chances
        else:
            samples, chances = [int(self.uec.exploration.n)] * len(difficult), [None] * len(difficult)
        for uid, key, chance, source in zip(fresh_uids, prompt_keys, chances, difficult):
            self.exploring[uid] = {"key": key, "chance": chance, "found": step, "source": source}
        return ExplorationPlan(
            uids=list(fresh_uids),
            sources=list(difficult),
            samples=list(samples),
            temperature=float(self.uec.exploration.temperature),
            deferred=deferred,
        )

    def record_exploration(self, exploration: GeneratedRows, step: int) -> ExplorationRecord:
        """Close the plans of the groups generated: how late they came and, with the adaptive budget, what each
        prompt's exploration found (its history) against what the budget expected."""
        groups = group_rows(exploration.uids)
        plans = {uid: self.exploring.pop(uid) for uid in groups}
        sources = {uid: plan["source"] for uid, plan in plans.items()}
        lag = [step - plans[uid]["found"] for uid in groups]
        metrics = {"uec/exploration_lag": float(np.mean(lag))}  # steps between finding a prompt and exploring it
        if self.exploration_budget is None:
            return ExplorationRecord(sources, metrics)
        sizes = [len(rows) for rows in groups.values()]
        successes = [int((exploration.accuracy[rows] > 0).sum()) for rows in groups.values()]
        chances = [plans[uid]["chance"] for uid in groups]
        for uid, size, found in zip(groups, sizes, successes):
            self.exploration_budget.record(plans[uid]["key"], size, found, step)
        metrics.update(
            {
                "uec/budget_samples": sum(sizes),
                "uec/budget_samples_min": min(sizes),
                "uec/budget_samples_max": max(sizes),
                "uec/budget_expected_successes": sum(n * p for n, p in zip(sizes, chances)),
                "uec/budget_realized_successes": sum(successes),
                "uec/budget_expected_solved": sum(1 - (1 - p) ** n for n, p in zip(sizes, chances)),
                "uec/budget_prompts_tracked": len(self.exploration_budget.history),
            }
        )
        return ExplorationRecord(sources, metrics)

    # ---- 5. selective retention ---------------------------------------------------------------------------------

    def retain(self, regular: GeneratedRows, exploration: GeneratedRows | None, step: int) -> Retention:
        """Regular |Â| > 0.05, exploration Â > 0 (or the configured rules); the released code concatenates the
        exploration survivors before the regular ones and drops overlong positives from that concatenation."""
        kept_exploration = self._kept(exploration, True, step) if exploration is not None else []
        kept_regular = self._kept(regular, False, step)
        survivors, overlong = self._drop_overlong_positive(kept_exploration + kept_regular)
        kept_keys = {row.key for row in survivors}
        discarded = [
            key for rows in (regular, exploration) if rows is not None for key in rows.keys if key not in kept_keys
        ]
        return Retention(kept_exploration, kept_regular, survivors, overlong, discarded)

    def _kept(self, rows: GeneratedRows, exploration: bool, step: int) -> list[BufferedRow]:
        """The rows retention keeps, as buffer records; ``retention.enable=false`` keeps every row (ablation)."""
        if not self.uec.retention.enable:
            keep = torch.ones_like(rows.advantages, dtype=torch.bool)
        elif exploration:
            keep = keep_exploration(rows.advantages, self.uec.exploration.retention)
        else:
            keep = keep_regular(rows.advantages, self.uec.retention.regular_abs_adv)
        return [
            BufferedRow(key=key, tag=tag, advantage=float(adv), exploration=exploration, step=step)
            for key, tag, adv, kept in zip(rows.keys, rows.tags, rows.advantages.tolist(), keep.tolist())
            if kept
        ]

    def _drop_overlong_positive(self, survivors: list[BufferedRow]) -> tuple[list[BufferedRow], list[BufferedRow]]:
        """Split survivors into (kept, dropped) by the overlong-positive filter in its configured scope."""
        if not survivors:
            return [], []
        advantages = torch.tensor([row.advantage for row in survivors])
        lengths = torch.tensor([row.tag["response_len"] for row in survivors])
        in_scope = overlong_filter_applies(
            torch.tensor([row.exploration for row in survivors]), self.uec.retention.drop_overlong_positive
        )
        drop = (in_scope & overlong_positive(advantages, lengths, self.max_response_length)).tolist()
        return [r for r, d in zip(survivors, drop) if not d], [r for r, d in zip(survivors, drop) if d]

    # ---- 6. batch buffer and update trigger ---------------------------------------------------------------------

    def plan_update(self, survivors: Sequence[BufferedRow], step: int) -> UpdatePlan:
        """Append the survivors (evicting the oldest past capacity, as the released code truncates inside ``add``),
        then pop the oldest ⌊size/N0⌋·N0 rows for one update."""
        evicted = self.batch_buffer.extend(survivors)
        rows = self.batch_buffer.pop_oldest(update_pop_size(len(self.batch_buffer), self.n0))
        replay_due = self.replay_due(step)
        # Without an update nothing is admitted this step, so the replay buffer's size is already known.
        replays = replay_due and (bool(rows) or whole_blocks(len(self.replay_buffer), self.n0) > 0)
        return UpdatePlan(evicted=evicted, rows=rows, replay_due=replay_due, trains=bool(rows) or replays)

    def replay_due(self, step: int) -> bool:
        return bool(self.uec.replay.enable and step % self.uec.replay.frequency == 0)

    # ---- 7. replay ----------------------------------------------------------------------------------------------

    def admit(self, update_rows: Sequence[BufferedRow]) -> Admission:
        """7a: rows of this update with Â > A0 (or |Â| > A0) join the replay buffer with their frozen advantages."""
        admitted: list[BufferedRow] = []
        if self.uec.replay.enable and update_rows:
            advantages = torch.tensor([row.advantage for row in update_rows])
            keep = admit_to_replay(advantages, self.uec.replay.adv_threshold, self.uec.replay.admission)
            admitted = [row for row, kept in zip(update_rows, keep.tolist()) if kept]
        return Admission(admitted=admitted, evicted=self.replay_buffer.extend(admitted))

    def replay(self, step: int) -> list[BufferedRow]:
        """7c: the rows of this step's replay update (empty: none runs), counted as one replay update."""
        if not self.replay_due(step):
            return []
        rows = select_replay_rows(self.replay_buffer.rows(), self.n0, self.replay_buffer.capacity, self.replay_rng)
        if rows:
            self.replay_updates += 1
        return rows

    # ---- what the step did ----------------------------------------------------------------------------------------

    def step_metrics(
        self,
        regular: GeneratedRows,
        difficult: Sequence[str],
        exploration: GeneratedRows | None,
        retention: Retention,
    ) -> dict:
        generated = list(regular.tags) + ([] if exploration is None else list(exploration.tags))
        overlong = retention.overlong
        metrics = {
            "uec/difficult_prompts": len(difficult),
            "uec/difficulty_on_accuracy": int(regular.accuracy_source == "acc"),
            "uec/regular_samples": len(regular),
            "uec/regular_kept": len(retention.kept_regular),
            "uec/exploration_samples": 0 if exploration is None else len(exploration),
            "uec/exploration_kept": len(retention.kept_exploration),
            "uec/overlong_positive_dropped": len(overlong),
            "uec/overlong_positive_dropped_exploration": sum(row.exploration for row in overlong),
            "uec/difficult_solved_by_exploration": 0,
            "uec/batch_buffer_size": len(self.batch_buffer),
            "uec/regular_accuracy": float((regular.accuracy > 0).float().mean()),
            "tokens/generated": sum(tag["seq_len"] for tag in generated),
            "tokens/generated_response": sum(tag["response_len"] for tag in generated),
        }
        if exploration is not None:
            groups = group_rows(exploration.uids)
            successes = [int((exploration.accuracy[rows] > 0).sum()) for rows in groups.values()]
            metrics["uec/difficult_solved_by_exploration"] = sum(found > 0 for found in successes)
            metrics["uec/exploration_accuracy"] = float((exploration.accuracy > 0).float().mean())
            # How many of this round's exploration groups found k correct samples, for every k a group can reach,
            # so the columns are the same on every step with exploration.
            largest = max([self.largest_exploration_group(), *(len(rows) for rows in groups.values())])
            for k in range(largest + 1):
                metrics[f"uec/exploration_group_successes/{k}"] = successes.count(k)
        return metrics

    def largest_exploration_group(self) -> int:
        """The most samples one exploration group gets: G', or the adaptive budget's cap."""
        return int(self.uec.exploration.n if self.exploration_budget is None else self.exploration_budget.cap)

    def training_metrics(self, update_rows: Sequence[BufferedRow], replayed: Sequence[BufferedRow], step: int) -> dict:
        trained = list(update_rows) + list(replayed)
        metrics = {
            "uec/update_ran": int(bool(update_rows)),
            "uec/update_rows": len(update_rows),
            "uec/update_exploration_rows": sum(row.exploration for row in update_rows),
            "uec/replay_buffer_size": len(self.replay_buffer),
            "uec/replay_rows": len(replayed),
            "uec/replay_updates_total": self.replay_updates,
            "uec/trained_response_tokens": sum(row.tag["response_len"] for row in trained),
            "tokens/trained": sum(row.tag["seq_len"] for row in trained),
        }
        # How many steps ago the trained rows were generated (0 = this step's rollout).
        for name, rows in (("update", update_rows), ("replay", replayed)):
            if rows:
                ages = np.array([step - row.step for row in rows])
                metrics.update(
                    {
                        f"uec/{name}_staleness/min": int(ages.min()),
                        f"uec/{name}_staleness/mean": float(ages.mean()),
                        f"uec/{name}_staleness/max": int(ages.max()),
                    }
                )
        if replayed:
            metrics["uec/replay_mean_advantage"] = float(np.mean([row.advantage for row in replayed]))
            # Negative rows in replay lower the probability of answers the policy gave; only the |Â| > A0 admission
            # rule (the released code's) admits them (docs/algorithm.md, "The step", 7a).
            metrics["uec/replay_negative_share"] = float(np.mean([row.advantage < 0 for row in replayed]))
        return metrics

    # ---- checkpoint ---------------------------------------------------------------------------------------------

    def state(self) -> dict:
        """The counters and random states ``uec_recipe/checkpoint.py`` writes into ``uec_state.pt``."""
        return {
            "replay_updates": self.replay_updates,
            "replay_rng_state": self.replay_rng.getstate(),
            "exploring": self.exploring,
            "exploration_budget": None if self.exploration_budget is None else self.exploration_budget.state(),
        }

    def buffers(self) -> dict[str, list[BufferedRow]]:
        """The buffers' records under the names of their shards in ``uec_state.pt``."""
        return {"batch_buffer": self.batch_buffer.rows(), "replay_buffer": self.replay_buffer.rows()}

    def restore(self, state: dict, buffers: dict[str, Sequence[BufferedRow]]) -> None:
        """Back to a saved ``state()`` and ``buffers()`` (plain values, as ``uec_recipe/plain.py`` reads them)."""
        self.batch_buffer.replace(buffers["batch_buffer"])
        self.replay_buffer.replace(buffers["replay_buffer"])
        self.replay_updates = int(state["replay_updates"])
        self.replay_rng.setstate(state["replay_rng_state"])
        self.exploring = state["exploring"]
        if self.exploration_budget is not None and state.get("exploration_budget") is not None:
            self.exploration_budget.restore(state["exploration_budget"])
