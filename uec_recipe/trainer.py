"""The UEC-RL training step, wired into verl 0.9.1's V1 trainer (``trainer.v1.trainer_mode=uec``).

``UECTrainer`` subclasses verl's synchronous V1 trainer and overrides only ``step()`` and the hooks around it;
``fit()``, checkpointing, validation, log-prob passes and the PPO update are verl's. One step reads like the
numbered algorithm (docs/algorithm.md, paper §3):

1. regular rollout: P prompts × G samples at the base temperature, scored, GRPO advantage per prompt group
2. difficult prompts: groups whose every sample has accuracy 0
3. targeted exploration: G' more samples of each difficult prompt at T' (fresh uid = its own group)
4. advantage within each exploration group
5. selective retention: regular |Â| > 0.05, exploration Â > 0 (paper); then overlong positives are dropped from
   the survivors (exploration survivors first, then regular, as the released code concatenates them)
6. batch buffer: survivors are buffered; once it holds N0 rows or more, the oldest ⌊size/N0⌋·N0 rows are
   trained on in one update (old and reference log-probs recomputed with the current weights)
7. replay: rows of that update with Â > A0 enter the replay buffer; every f_replay steps an extra actor update
   runs on replay rows with their frozen advantages and stored log-probs

Rows live in verl's TransferQueue (TQ) for as long as a buffer holds them; the buffers hold keys. ``step()``
returns the keys that may be deleted, because ``fit()`` clears whatever ``step()`` returns.
With ``uec.enable=false`` the step is verl's own, so the baselines run through the same trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import uuid

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
from verl.utils import tensordict_utils as tu
from verl.utils.debug import marked_timer
from verl.utils.debug.metrics import calculate_debug_metrics
from verl.workers.utils.padding import response_to_nested

from uec_recipe.algo.buffers import (
    BufferedRow,
    FifoBuffer,
    fifo_capacity,
    select_replay_rows,
    update_pop_size,
    whole_blocks,
)
from uec_recipe.algo.config import UECConfig, load_and_validate, update_batch_rows
from uec_recipe.algo.difficulty import difficult_groups, group_rows, sequence_accuracy, sequence_advantages
from uec_recipe.algo.exploration_budget import ExplorationBudget
from uec_recipe.algo.retention import (
    admit_to_replay,
    keep_exploration,
    keep_regular,
    overlong_filter_applies,
    overlong_positive,
)
from uec_recipe.baselines import apply_entropy_advantage
from uec_recipe.checkpoint import (
    STATE_FILE,
    buffer_rows,
    buffered_images,
    iter_buffer_shards,
    pending_exploration,
    read_state,
    remove_orphaned_states,
    write_state,
)
from uec_recipe.eval.passk import validation_passk_metrics
from uec_recipe.images import BufferedImages
from uec_recipe.plain import from_plain
from uec_recipe.rollout.agent_loop import TEMPERATURE_COLUMN

logger = logging.getLogger(__name__)

PARTITION = "train"
# fit() clears the keys step() returns and TransferQueue rejects an empty list; clearing an unknown key is a no-op.
_NOTHING_TO_CLEAR = "uec-nothing-to-clear"
_SYNC_DIFF_PREFIX = "training/rollout_"


def prompt_key(batch: TensorDict, row: int) -> str:
    """A prompt's identity across epochs (uids are fresh every time a prompt is drawn): its data source, messages
    and extra info, hashed."""
    parts = []
    for field in ("data_source", "raw_prompt", "extra_info"):
        if field in batch.keys():
            value = batch[field][row]
            parts.append(json.dumps(getattr(value, "data", value), sort_keys=True, default=str))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


class ScoredRows:
    """A sampled batch as the UEC step uses it: TQ keys and tags, group advantages, accuracy, origin."""

    def __init__(self, meta: KVBatchMeta, data: DataProto, accuracy: torch.Tensor, accuracy_source: str):
        self.meta, self.data = meta, data
        self.accuracy, self.accuracy_source = accuracy, accuracy_source
        self.advantages = sequence_advantages(data)
        self.uids = list(data.non_tensor_batch["uid"])

    def __len__(self) -> int:
        return len(self.meta)


@register_trainer("uec")
class UECTrainer(PPOTrainerSync):
    def __init__(self, config):
        self.uec: UECConfig = load_and_validate(config)
        # Any trainer mode other than "sync" switches verl's base class to asynchronous semantics, and "sync" is
        # taken; so the UEC trainer registers as "uec" and runs as "sync" (docs/design.md, "Trainer").
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        if self.uec.sample_poll_interval_s is not None:
            # verl's ReplayBuffer polls TransferQueue every 2 s; a CPU toy step is shorter than that.
            self.replay_buffer.poll_interval = float(self.uec.sample_poll_interval_s)
        self.init_uec_state()

    def init_uec_state(self) -> None:
        """The UEC step's own state, from ``self.uec`` and ``self.config`` (empty buffers, fresh counters)."""
        config = self.config
        self.base_temperature = float(config.actor_rollout_ref.rollout.temperature)
        self.max_response_length = int(config.data.max_response_length)
        self.n0 = update_batch_rows(self.uec, config)
        self.batch_buffer = FifoBuffer(fifo_capacity(self.uec.batch_buffer.capacity_multiple, self.n0))
        self.replay_buffer_rows = FifoBuffer(fifo_capacity(self.uec.replay.capacity_multiple, self.n0))
        self.replay_rng = random.Random(self.uec.seed)
        self.replay_updates = 0
        self._step_prompts = None  # this step's prompt rows, kept to re-sample the difficult ones
        self._step_rows: KVBatchMeta | None = None  # this step's regular rollout, for verl's data metrics
        self._rollout_asleep = True  # whether the rollout was put to sleep this step (it then needs the weights)
        ex = self.uec.exploration
        self.pipelined = ex.schedule == "pipelined"
        # the pipelined schedule's exploration of the last step's difficult prompts, generated with this step's
        # regular rollout: the prompt rows (fresh uids, G', T') and, per uid, what the exploration is for
        self._pending_exploration: TensorDict | None = None
        self._exploring: dict[str, dict] = {}  # uid -> {"key": prompt key, "chance": estimate, "found": step}
        self.exploration_budget = (
            ExplorationBudget(ex.n, ex.budget_floor, ex.budget_cap) if ex.budget == "adaptive" else None
        )
        self.buffered_images = BufferedImages()  # VLM rows' image inputs, once per prompt while buffered
        self._image_source: dict[str, str] = {}  # this step's exploration uid -> the prompt uid it re-samples

    # ---- hooks around verl's loop ---------------------------------------------------------------------------

    def _next_train_batch(self, num_prompts=None):
        batch = super()._next_train_batch(num_prompts)
        if self.uec.enable:
            # Every row carries the column, so regular and exploration rows have the same fields in TQ (TQ
            # silently drops a field that only some rows of a batch have).
            tu.assign_non_tensor_stack(batch, TEMPERATURE_COLUMN, [self.base_temperature] * len(batch))
            self._step_prompts = batch
        return batch

    def on_sample_end(self):
        # verl sleeps the rollout right after sampling; UEC samples twice per step, and a step that trains
        # nothing need not sleep it at all, so the UEC step decides when to sleep (see _sleep_rollout_if_needed).
        if not self.uec.enable:
            super().on_sample_end()

    def on_step_end(self):
        # A step that updated nothing leaves the weights as they were: the rollout, never put to sleep, still
        # holds them, so the weight push (seconds per step at 7B) is skipped.
        if self.uec.enable and not self._rollout_asleep:
            self.timing_raw["update_weights"] = 0.0
            return
        super().on_step_end()

    def step(self, metrics: dict, timing_raw: dict) -> KVBatchMeta:
        if not self.uec.enable:
            self._step_rows = None
            return super().step(metrics, timing_raw)
        to_clear: list[str] = []

        # 1. regular rollout and its group advantages; the pipelined schedule generates the exploration of the last
        #    step's difficult prompts in the same round
        pending = self._pending_exploration
        self._pending_exploration = None
        with marked_timer("gen", timing_raw, color="red"):
            if pending is not None:
                tu.assign_non_tensor_data(pending, "global_steps", self.global_steps)
                self._submit_batch_to_rollout(pending)
            self.prepare_step()
            groups = self.config.data.train_batch_size + (0 if pending is None else len(pending))
            sampled, off_policy_metrics = self.replay_buffer.sample(
                global_steps=self.global_steps, partition_id=PARTITION, batch_size=groups
            )
            metrics.update(off_policy_metrics)
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            regular_meta, explored_meta = self._split_exploration(sampled, pending)
        with marked_timer("adv", timing_raw, color="brown"):
            regular = self._score(regular_meta)
        self._step_rows = regular.meta
        exploration = None
        if explored_meta is not None:  # pipelined: the exploration generated in this round, recorded before the
            exploration = self._score_exploration(explored_meta, metrics, timing_raw)  # next split is planned

        # 2.-4. difficult prompts (accuracy 0 on every sample), exploration at T', advantages within its groups
        difficult = difficult_groups(regular.uids, regular.accuracy, self.uec.exploration.difficulty_threshold)
        if self.uec.exploration.enable and difficult:
            batch = self._exploration_batch(difficult)
            if not self.pipelined:
                with marked_timer("gen_explore", timing_raw, color="red"):
                    explored_meta = self._generate_exploration(batch)
                exploration = self._score_exploration(explored_meta, metrics, timing_raw)
            elif self.global_steps < self.total_training_steps:
                self._pending_exploration = batch  # generated with the next step's regular rollout
            else:  # the last step: no next round generates it
                for uid in batch["uid"]:
                    self._exploring.pop(uid, None)
        if getattr(self, "curr_step_profile", False):
            self._stop_rollout_profiling()  # verl stops it in on_sample_end, which the UEC step leaves to itself
        metrics["uec/exploration_pending"] = 0 if self._pending_exploration is None else len(self._pending_exploration)

        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            # 5. selective retention; the released code concatenates exploration survivors before regular ones
            #    and drops overlong positives from that concatenation
            kept_exploration = self._retain(exploration, exploration=True) if exploration is not None else []
            kept_regular = self._retain(regular, exploration=False)
            survivors, overlong = self._drop_overlong_positive(kept_exploration + kept_regular)
            kept_keys = {row.key for row in survivors}
            for rows in (regular, exploration):
                if rows is not None:
                    to_clear += [key for key in rows.meta.keys if key not in kept_keys]

            # 6. batch buffer: evict past capacity, then pop the oldest whole N0 blocks
            to_clear += [row.key for row in self.batch_buffer.extend(survivors)]
            update_rows = self.batch_buffer.pop_oldest(update_pop_size(len(self.batch_buffer), self.n0))
            self._strip_images([row.key for row in self.batch_buffer.rows()])
            replay_due = self.uec.replay.enable and self.global_steps % self.uec.replay.frequency == 0
            # Without an update nothing is admitted this step, so the replay buffer's size is already known.
            replays = replay_due and (bool(update_rows) or whole_blocks(len(self.replay_buffer_rows), self.n0) > 0)
        self._sleep_rollout_if_needed(trains=bool(update_rows) or replays)

        trained_tokens = 0
        if update_rows:
            trained = self._update_on_rows(update_rows, metrics, timing_raw)
            trained_tokens += sum(row.tag["seq_len"] for row in update_rows)
            # 7a. replay admission: rows of this update with a high advantage, with their stored log-probs
            with marked_timer("uec_bookkeeping", timing_raw, color="white"):
                admitted = self._admit_to_replay(update_rows) if self.uec.replay.enable else []
                admitted_keys = {row.key for row in admitted}
                to_clear += [key for key in trained.keys if key not in admitted_keys]
                to_clear += [row.key for row in self.replay_buffer_rows.extend(admitted)]
                self._strip_images([row.key for row in admitted if row.key not in to_clear])

        # 7b. the stabilizer: an extra, separate update on replay rows every f_replay steps
        replayed = []
        if replay_due:
            replayed = select_replay_rows(
                self.replay_buffer_rows.rows(), self.n0, self.replay_buffer_rows.capacity, self.replay_rng
            )
            if replayed:
                self._replay_update(replayed, metrics, timing_raw)
                trained_tokens += sum(row.tag["seq_len"] for row in replayed)
                self._strip_images([row.key for row in replayed])

        self.buffered_images.release(to_clear)
        self._image_source = {}
        metrics["uec/buffered_image_bytes"] = self.buffered_images.bytes_held()
        metrics.update(self._uec_metrics(regular, difficult, exploration, kept_regular, kept_exploration, overlong))
        metrics.update(self._update_metrics(update_rows, replayed, trained_tokens))
        metrics.update(self._rollout_entropy_metrics(regular.meta, "entropy/regular_rollout"))
        if exploration is not None:
            metrics.update(self._rollout_entropy_metrics(exploration.meta, "entropy/exploration_rollout"))
        return KVBatchMeta(
            partition_id=PARTITION, keys=to_clear or [_NOTHING_TO_CLEAR], tags=[{}] * max(1, len(to_clear))
        )

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        # verl computes its data metrics (score, response length, advantages) over the batch step() returns; under
        # UEC that is the list of rows to delete, so report them over this step's regular rollout instead.
        if self._step_rows is not None:
            batch = self._step_rows
        else:
            # Every other method: the rows the step trained on are its rollout (DAPO: the groups it kept).
            metrics.update(self._rollout_entropy_metrics(batch, "entropy/regular_rollout"))
            tokens = sum(tag["seq_len"] for tag in batch.tags if not tag.get("is_padding", False))
            metrics.update({"tokens/generated": tokens, "tokens/trained": tokens})
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        step_time, n_gpus = timing_raw.get("step"), self._get_n_gpus_for_throughput()
        if self.uec.enable:
            # verl counts the regular rollout only; a UEC step also generates exploration samples.
            metrics["perf/total_num_tokens"] = metrics["tokens/generated"]
            if step_time:
                metrics["perf/throughput"] = metrics["tokens/generated"] / (step_time * n_gpus)
        if step_time:
            metrics["perf/throughput_trained"] = metrics["tokens/trained"] / (step_time * n_gpus)
        print(progress_line(metrics, global_steps, self.total_training_steps), flush=True)

    def _compute_advantage(self, batch, metrics):
        # Entropy-Adv (algo=entropy_adv): verl's advantages, then the entropy bonus (uec_recipe/baselines.py)
        batch = super()._compute_advantage(batch, metrics)
        if self.config.algorithm.get("entropy_adv", {}).get("enable", False):
            batch = apply_entropy_advantage(batch, self.config.algorithm, metrics)
        return batch

    def _val_metrics_update(
        self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns, expected_acc_counts=None
    ):
        # verl reports best@k, a with-replacement bootstrap that is biased low; add the unbiased pass@k and
        # pass^k (Chen et al. 2021) of the same validation samples, with the sampling settings beside them.
        metrics = super()._val_metrics_update(
            data_sources, sample_uids, reward_extra_infos_dict, sample_turns, expected_acc_counts
        )
        val_kwargs = self.config.actor_rollout_ref.rollout.val_kwargs
        metrics.update(
            validation_passk_metrics(
                data_sources,
                sample_uids,
                reward_extra_infos_dict,
                expected_acc_counts,
                temperature=val_kwargs.temperature,
                top_p=val_kwargs.top_p,
            )
        )
        return metrics

    # ---- checkpoint and resume of the UEC state ---------------------------------------------------------------

    def _save_checkpoint(self):
        # Written before verl saves the model and moves its "latest" tracker: an interrupted save never leaves a
        # tracked checkpoint without its UEC state (uec_recipe/checkpoint.py).
        if self.uec.enable:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            self._write_uec_state(folder)
        super()._save_checkpoint()
        if self.uec.enable:
            remove_orphaned_states(self.config.trainer.default_local_dir)

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if not self.uec.enable or self.global_steps == 0:
            return
        if self.config.trainer.resume_mode == "resume_path":
            folder = self.config.trainer.resume_from_path
        else:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        state = read_state(os.path.join(folder, STATE_FILE))
        if state is None:
            logger.warning(
                "checkpoint %s has no UEC state (%s); resuming with empty batch and replay buffers", folder, STATE_FILE
            )
            print(f"[uec] WARNING: {folder} has no {STATE_FILE}: resuming with empty buffers", flush=True)
            return
        self._restore_uec_state(folder, state)
        pending = 0 if self._pending_exploration is None else len(self._pending_exploration)
        print(
            f"[uec] restored {len(self.batch_buffer)} batch-buffer rows and {len(self.replay_buffer_rows)} replay rows "
            f"({pending} prompts pending exploration) from {folder}",
            flush=True,
        )

    def _write_uec_state(self, folder: str) -> None:
        meta = {
            "global_steps": self.global_steps,
            "replay_updates": self.replay_updates,
            "replay_rng_state": self.replay_rng.getstate(),
            "exploring": self._exploring,
            "exploration_budget": None if self.exploration_budget is None else self.exploration_budget.state(),
        }
        buffers = {"batch_buffer": self.batch_buffer.rows(), "replay_buffer": self.replay_buffer_rows.rows()}

        def fetch(keys):
            return tq.kv_batch_get(keys=keys, partition_id=PARTITION).cpu()

        write_state(folder, meta, buffers, fetch, self._pending_exploration, self.buffered_images.state())

    def _restore_uec_state(self, folder: str, state: dict) -> None:
        for name, buffer in (("batch_buffer", self.batch_buffer), ("replay_buffer", self.replay_buffer_rows)):
            rows = buffer_rows(state, name)
            tags = {row.key: dict(row.tag) for row in rows}
            for keys, fields in iter_buffer_shards(folder, state, name):
                tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=fields, tags=[tags[k] for k in keys])
            buffer.replace(rows)
        self.replay_updates = int(state["replay_updates"])
        self.replay_rng.setstate(from_plain(state["replay_rng_state"]))
        self._exploring = from_plain(state["exploring"])
        self._pending_exploration = pending_exploration(state)
        if self.exploration_budget is not None and state.get("exploration_budget") is not None:
            self.exploration_budget.restore(from_plain(state["exploration_budget"]))
        images = buffered_images(folder, state)
        if images is not None:
            self.buffered_images.load(images)

    # ---- the stages ---------------------------------------------------------------------------------------------

    def _score(self, meta: KVBatchMeta) -> ScoredRows:
        """Advantages within each uid group (written back to TQ for the update) and each row's accuracy."""
        fields = tq.kv_batch_get(
            keys=meta.keys,
            partition_id=meta.partition_id,
            select_fields=["uid", "response_mask", "rm_scores", "extra_fields"],
        )
        response_mask = fields["response_mask"]
        extra_fields = list(fields["extra_fields"]) if "extra_fields" in fields.keys() else [None] * len(meta)
        data = DataProto(batch=fields.select("uid", "response_mask", "rm_scores").to_padded_tensor())
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        data.batch["token_level_rewards"] = data.batch["rm_scores"]
        data = compute_advantage_for_multi_trajectories(
            data,
            batch_keys=meta.keys,
            adv_estimator=self.config.algorithm.adv_estimator,
            gamma=self.config.algorithm.gamma,
            lam=self.config.algorithm.lam,
            num_repeat=self.config.actor_rollout_ref.rollout.n,
            norm_adv_by_std_in_grpo=self.config.algorithm.get("norm_adv_by_std_in_grpo", True),
            config=self.config.algorithm,
        )
        nested = {name: response_to_nested(data.batch[name], response_mask) for name in ("advantages", "returns")}
        tq.kv_batch_put(keys=meta.keys, partition_id=meta.partition_id, fields=TensorDict(nested, batch_size=len(meta)))
        accuracy, source = sequence_accuracy(extra_fields, data.batch["token_level_scores"].sum(dim=-1))
        return ScoredRows(meta, data, accuracy, source)

    def _exploration_batch(self, difficult: list[str]) -> TensorDict:
        """The difficult prompts as a new batch: a fresh uid each (its own group, no '_' in it), T', and G' samples
        (``budget=adaptive``: the prompt's share of the same total, from its exploration history)."""
        prompts = self._step_prompts
        uid_to_row = {str(uid): row for row, uid in enumerate(prompts["uid"])}
        rows = [uid_to_row[uid] for uid in difficult]
        batch = tu.index_select_tensor_dict(prompts, rows)
        keys = [prompt_key(batch, i) for i in range(len(rows))]
        if self.exploration_budget is not None:
            allocation = self.exploration_budget.allocate(keys)
            samples, chances = allocation.samples, allocation.chances
        else:
            samples, chances = [int(self.uec.exploration.n)] * len(rows), [None] * len(rows)
        uids = [uuid.uuid4().hex for _ in rows]
        tu.assign_non_tensor_stack(batch, "uid", uids)
        tu.assign_non_tensor_stack(batch, "__rollout_n__", samples)
        tu.assign_non_tensor_stack(batch, TEMPERATURE_COLUMN, [float(self.uec.exploration.temperature)] * len(rows))
        for uid, key, chance, source in zip(uids, keys, chances, difficult):
            self._exploring[uid] = {"key": key, "chance": chance, "found": self.global_steps, "source": source}
        return batch

    def _score_exploration(self, meta: KVBatchMeta, metrics: dict, timing_raw: dict) -> ScoredRows:
        with marked_timer("adv", timing_raw, color="brown"):
            exploration = self._score(meta)
        metrics.update(self._record_exploration(exploration))
        return exploration

    def _generate_exploration(self, batch: TensorDict) -> KVBatchMeta:
        """The reference schedule: a second generation round in this step, for the difficult prompts only."""
        self._submit_batch_to_rollout(batch)
        sampled, _ = self.replay_buffer.sample(
            global_steps=self.global_steps, partition_id=PARTITION, batch_size=len(batch)
        )
        return self._canonical_order(sampled, list(batch["uid"]))

    def _split_exploration(self, sampled: KVBatchMeta, pending: TensorDict | None):
        """This step's regular rollout and, when pipelined, the exploration generated beside it (else None)."""
        regular_uids = list(self._step_prompts["uid"])
        if pending is None:
            return self._canonical_order(sampled, regular_uids), None
        explored_uids = list(pending["uid"])
        explored = set(explored_uids)
        origin = [key.split("_")[0] in explored for key in sampled.keys]
        parts = [[i for i, is_exploration in enumerate(origin) if is_exploration == want] for want in (False, True)]
        regular, exploration = (
            KVBatchMeta(
                partition_id=sampled.partition_id,
                keys=[sampled.keys[i] for i in part],
                tags=[sampled.tags[i] for i in part],
            )
            for part in parts
        )
        return self._canonical_order(regular, regular_uids), self._canonical_order(exploration, explored_uids)

    def _record_exploration(self, exploration: ScoredRows) -> dict:
        """Per-prompt outcomes into the adaptive budget's history; what was expected vs what was found."""
        groups = group_rows(exploration.uids)
        plans = {uid: self._exploring.pop(uid) for uid in groups}
        self._image_source.update({uid: plan["source"] for uid, plan in plans.items()})
        lag = [self.global_steps - plans[uid]["found"] for uid in groups]
        metrics = {"uec/exploration_lag": float(np.mean(lag))}  # steps between finding a prompt and exploring it
        if self.exploration_budget is None:
            return metrics
        sizes = [len(rows) for rows in groups.values()]
        successes = [int((exploration.accuracy[rows] > 0).sum()) for rows in groups.values()]
        chances = [plans[uid]["chance"] for uid in groups]
        for uid, size, found in zip(groups, sizes, successes):
            self.exploration_budget.record(plans[uid]["key"], size, found, self.global_steps)
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
        return metrics

    @staticmethod
    def _canonical_order(meta: KVBatchMeta, prompt_uids: list[str]) -> KVBatchMeta:
        """The sampled rows by prompt (in submission order), then by response tokens.

        Rows arrive in whatever order the rollout finished them, and which session of a prompt got which sample
        depends on request timing. The FIFO buffers keep row order, so without a canonical order two runs with the
        same seed would pop different rows into an update. Rows with equal responses are interchangeable.
        """
        responses = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=["responses"])
        tokens = [row.tolist() for row in responses["responses"]]
        position = {str(uid): i for i, uid in enumerate(prompt_uids)}
        order = sorted(range(len(meta)), key=lambda i: (position[meta.keys[i].split("_")[0]], tokens[i], meta.keys[i]))
        return KVBatchMeta(
            partition_id=meta.partition_id, keys=[meta.keys[i] for i in order], tags=[meta.tags[i] for i in order]
        )

    def _retain(self, rows: ScoredRows, exploration: bool) -> list[BufferedRow]:
        """Selective retention by advantage (stage 5); ``retention.enable=false`` keeps every row (ablation)."""
        if not self.uec.retention.enable:
            keep = torch.ones_like(rows.advantages, dtype=torch.bool)
        elif exploration:
            keep = keep_exploration(rows.advantages, self.uec.exploration.retention)
        else:
            keep = keep_regular(rows.advantages, self.uec.retention.regular_abs_adv)
        return [
            BufferedRow(key=key, tag=tag, advantage=float(adv), exploration=exploration, step=self.global_steps)
            for key, tag, adv, kept in zip(rows.meta.keys, rows.meta.tags, rows.advantages.tolist(), keep.tolist())
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

    def _strip_images(self, keys: list[str]) -> None:
        """Hand the image inputs of rows that stay buffered to ``buffered_images`` (uec_recipe/images.py)."""

        def prompt_of(key: str) -> str:
            uid = key.split("_")[0]
            return self._image_source.get(uid, uid)  # exploration rows share the picture of the prompt they re-sample

        self.buffered_images.strip(tq, PARTITION, keys, prompt_of)

    def _sleep_rollout_if_needed(self, trains: bool) -> None:
        """Sleep the rollout (free its memory) only when the trainer needs the device: an update or a save.

        verl's rollout discards its weights when it sleeps, so a slept rollout must receive them again at the end
        of the step; a step that neither trains nor saves keeps the rollout awake and skips that push.
        """
        save_freq = int(self.config.trainer.save_freq)
        saves = save_freq > 0 and (self.global_steps >= self.total_training_steps or self.global_steps % save_freq == 0)
        self._rollout_asleep = trains or saves
        if self._rollout_asleep:
            self.checkpoint_manager.sleep_replicas()

    def _update_on_rows(self, rows: list[BufferedRow], metrics: dict, timing_raw: dict) -> KVBatchMeta:
        """One PPO update on buffered rows: fresh old/ref log-probs with the current weights, frozen advantages."""
        self.buffered_images.restore(tq, PARTITION, [r.key for r in rows])
        batch = KVBatchMeta(partition_id=PARTITION, keys=[r.key for r in rows], tags=[dict(r.tag) for r in rows])
        batch.extra_info["temperature"] = self.base_temperature
        batch = self._balance_batch(batch, metrics=metrics)
        log_prob_metrics: dict = {}
        with marked_timer("old_log_prob", timing_raw, color="blue"):
            batch = self._compute_old_log_prob(batch, metrics=log_prob_metrics)
        # verl's rollout-vs-trainer log-prob diff over these rows mixes T' samples and rows generated by older
        # weights, so it would look like a weight-sync fault; it is recomputed on this step's base-T rows only.
        metrics.update({k: v for k, v in log_prob_metrics.items() if not k.startswith(_SYNC_DIFF_PREFIX)})
        if self.use_reference_policy:
            with marked_timer("ref", timing_raw, color="olive"):
                batch = self._compute_ref_log_prob(batch, metrics=metrics)
        # The meta returned by a TQ write lists the fields stored at that moment; the update must read all of them.
        batch.fields = None
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            metrics.update(self._entropy_by_origin(batch, rows))
            metrics.update(self._sync_check(rows))
        with marked_timer("update_actor", timing_raw, color="red"):
            batch = self._update_actor(batch, metrics=metrics)
        return batch

    def _sync_check(self, rows: list[BufferedRow]) -> dict:
        """verl's rollout-vs-trainer log-prob comparison on the rows this step generated at the base temperature.

        Those rows were sampled with the weights the trainer still holds, so the two log-probs agree to float
        precision when the weight sync works (the check verl's metric is meant to be).
        """
        if not self.config.actor_rollout_ref.rollout.calculate_log_probs:
            return {}
        fresh = [r.key for r in rows if not r.exploration and r.step == self.global_steps]
        if not fresh:
            return {}
        fields = ["old_log_probs", "rollout_log_probs", "response_mask", "responses"]
        data = tq.kv_batch_get(keys=fresh, partition_id=PARTITION, select_fields=fields)
        if set(fields) - set(data.keys()):
            return {}
        return calculate_debug_metrics(DataProto(batch=data.to_padded_tensor()))

    def _admit_to_replay(self, rows: list[BufferedRow]) -> list[BufferedRow]:
        advantages = torch.tensor([row.advantage for row in rows])
        admitted = admit_to_replay(advantages, self.uec.replay.adv_threshold, self.uec.replay.admission)
        return [row for row, keep in zip(rows, admitted.tolist()) if keep]

    def _replay_update(self, rows: list[BufferedRow], metrics: dict, timing_raw: dict) -> None:
        """The extra update: no log-prob recompute, so the worker reads the stored old/ref log-probs and advantages."""
        self.buffered_images.restore(tq, PARTITION, [r.key for r in rows])
        batch = KVBatchMeta(partition_id=PARTITION, keys=[r.key for r in rows], tags=[dict(r.tag) for r in rows])
        batch.extra_info["temperature"] = self.base_temperature
        batch = self._balance_batch(batch, metrics={})
        replay_metrics: dict = {}
        with marked_timer("uec_replay/update_actor", timing_raw, color="red"):
            self._update_actor(batch, metrics=replay_metrics)
        metrics.update({f"uec_replay/{name}": value for name, value in replay_metrics.items()})
        # Padding rows that _balance_batch may have added belong to no buffer: delete them now.
        padding_keys = [key for key, tag in zip(batch.keys, batch.tags) if tag.get("is_padding", False)]
        if padding_keys:
            tq.kv_clear(keys=padding_keys, partition_id=PARTITION)
        self.replay_updates += 1

    def _entropy_by_origin(self, batch: KVBatchMeta, rows: list[BufferedRow]) -> dict:
        """Token-mean entropy (base temperature, current weights) of the regular vs exploration rows updated on."""
        exploration_keys = {row.key for row in rows if row.exploration}
        data = tq.kv_batch_get(keys=batch.keys, partition_id=PARTITION, select_fields=["entropy", "response_mask"])
        metrics = {}
        for name, wanted in (("regular", False), ("exploration", True)):
            entropies, tokens = 0.0, 0
            for i, key in enumerate(batch.keys):
                if batch.tags[i].get("is_padding", False) or (key in exploration_keys) != wanted:
                    continue
                row_entropy = data["entropy"][i]
                entropies += float(row_entropy.sum())
                tokens += int(row_entropy.numel())
            if tokens:
                metrics[f"uec/entropy_{name}"] = entropies / tokens
        return metrics

    def _rollout_entropy_metrics(self, meta: KVBatchMeta, name: str) -> dict:
        """Token-mean of −log q over the sampled response tokens: an unbiased estimate of the rollout's entropy.

        q is the distribution the rollout sampled from (base temperature and top_p for regular rows; verl asks
        the rollout for its processed log-probs), and E_{a~q}[−log q(a)] is q's entropy. The same figure for every
        method, with no extra forward pass (docs/algorithm.md, "Entropy").
        """
        if not self.config.actor_rollout_ref.rollout.calculate_log_probs:
            return {}
        keys = [key for key, tag in zip(meta.keys, meta.tags) if not tag.get("is_padding", False)]
        if not keys:
            return {}
        data = tq.kv_batch_get(keys=keys, partition_id=meta.partition_id, select_fields=["rollout_log_probs"])
        if "rollout_log_probs" not in data.keys():
            return {}
        values = data["rollout_log_probs"].values()
        return {name: float(-values.float().mean())} if values.numel() else {}

    def _uec_metrics(self, regular, difficult, exploration, kept_regular, kept_exploration, overlong) -> dict:
        generated = list(regular.meta.tags) + ([] if exploration is None else list(exploration.meta.tags))
        metrics = {
            "uec/difficult_prompts": len(difficult),
            "uec/difficulty_on_accuracy": int(regular.accuracy_source == "acc"),
            "uec/regular_samples": len(regular),
            "uec/regular_kept": len(kept_regular),
            "uec/exploration_samples": 0 if exploration is None else len(exploration),
            "uec/exploration_kept": len(kept_exploration),
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
            metrics["uec/difficult_solved_by_exploration"] = sum(
                bool((exploration.accuracy[rows] > 0).any()) for rows in groups.values()
            )
            metrics["uec/exploration_accuracy"] = float((exploration.accuracy > 0).float().mean())
        return metrics

    def _update_metrics(self, update_rows, replayed, trained_tokens) -> dict:
        metrics = {
            "uec/update_ran": int(bool(update_rows)),
            "uec/update_rows": len(update_rows),
            "uec/update_exploration_rows": sum(row.exploration for row in update_rows),
            "uec/replay_buffer_size": len(self.replay_buffer_rows),
            "uec/replay_rows": len(replayed),
            "uec/replay_updates_total": self.replay_updates,
            "uec/weight_sync_skipped": int(not self._rollout_asleep),
            "uec/trained_response_tokens": sum(row.tag["response_len"] for row in update_rows + replayed),
            "tokens/trained": trained_tokens,
        }
        # How many steps ago the trained rows were generated (0 = this step's rollout).
        for name, rows in (("update", update_rows), ("replay", replayed)):
            if rows:
                ages = np.array([self.global_steps - row.step for row in rows])
                metrics.update(
                    {
                        f"uec/{name}_staleness/min": int(ages.min()),
                        f"uec/{name}_staleness/mean": float(ages.mean()),
                        f"uec/{name}_staleness/max": int(ages.max()),
                    }
                )
        if replayed:
            metrics["uec/replay_mean_advantage"] = float(np.mean([row.advantage for row in replayed]))
        return metrics


def progress_line(metrics: dict, step: int, total_steps: int) -> str:
    """One compact line per step (verl's console logger prints every metric)."""

    def value(key, fmt="{:.3f}"):
        return fmt.format(metrics[key]) if key in metrics else "-"

    parts = [
        f"[uec] step {step}/{total_steps}",
        f"acc {value('critic/score/mean')}",
        f"entropy {value('entropy/regular_rollout')}",
        f"resp_len {value('response_length/mean', '{:.1f}')}",
        f"step {value('timing_s/step', '{:.1f}')}s",
    ]
    if "uec/difficult_prompts" in metrics:
        parts += [
            f"difficult {metrics['uec/difficult_prompts']}",
            f"explore kept {metrics['uec/exploration_kept']}/{metrics['uec/exploration_samples']}",
            f"buffer {metrics['uec/batch_buffer_size']}",
            "update " + ("ran" if metrics["uec/update_ran"] else "skipped"),
            f"replay {metrics['uec/replay_rows']} rows (buffer {metrics['uec/replay_buffer_size']})",
        ]
    val = [
        f"{k.split('/', 1)[1].rsplit('/', 2)[0]} {k.rsplit('/', 1)[1]} {v:.3f}"
        for k, v in metrics.items()
        if k.startswith("val-core/") and "/acc/mean" in k
    ]
    if val:
        parts.append("val " + ", ".join(val))
    return " | ".join(parts)
