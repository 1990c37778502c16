"""The UEC-RL training step, wired into verl 0.9.1's V1 trainer (``trainer.v1.trainer_mode=uec``).

``UECTrainer`` subclasses verl's synchronous V1 trainer and overrides only ``step()`` and the hooks around it;
``fit()``, checkpointing, validation, log-prob passes and the PPO update are verl's. One step reads like the
numbered algorithm (docs/algorithm.md, paper §3):

1. regular rollout: P prompts × G samples at the base temperature, scored, GRPO advantage per prompt group
2. difficult prompts: groups whose every sample scored 0
3. targeted exploration: G' more samples of each difficult prompt at T' (fresh uid = its own group)
4. advantage within each exploration group
5. selective retention: regular |Â| > 0.05, exploration Â > 0 (paper), overlong positives dropped
6. batch buffer: survivors are buffered; an update runs only once N0 rows are buffered (old and reference
   log-probs recomputed for the popped rows with the current weights)
7. replay: rows of that update with Â > A0 enter the replay buffer; every f_replay steps an extra actor update
   runs on replay rows with their frozen advantages and stored log-probs

Rows live in verl's TransferQueue (TQ) for as long as a buffer holds them; the buffers hold keys. ``step()``
returns the keys that may be deleted, because ``fit()`` clears whatever ``step()`` returns.
With ``uec.enable=false`` the step is verl's own, so the baselines run through the same trainer.
"""

from __future__ import annotations

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
from verl.workers.utils.padding import response_to_nested

from uec_recipe.algo.buffers import BufferedRow, FifoBuffer, fifo_capacity, select_replay_rows
from uec_recipe.algo.config import UECConfig, load_and_validate, update_batch_rows
from uec_recipe.algo.difficulty import difficult_groups, group_rows, sequence_advantages, sequence_scores
from uec_recipe.algo.retention import admit_to_replay, keep_exploration, keep_regular, overlong_positive
from uec_recipe.baselines import apply_entropy_advantage
from uec_recipe.checkpoint import STATE_FILE, build_state, read_state, records_to_rows, write_atomically
from uec_recipe.eval.passk import validation_passk_metrics
from uec_recipe.rollout.agent_loop import TEMPERATURE_COLUMN

logger = logging.getLogger(__name__)

PARTITION = "train"
# fit() clears the keys step() returns and TransferQueue rejects an empty list; clearing an unknown key is a no-op.
_NOTHING_TO_CLEAR = "uec-nothing-to-clear"
# verl's ReplayBuffer polls TransferQueue every 2 s; on a toy model a step is shorter than that.
_POLL_INTERVAL_S = 0.05


@register_trainer("uec")
class UECTrainer(PPOTrainerSync):
    def __init__(self, config):
        self.uec: UECConfig = load_and_validate(config)
        # Any trainer mode other than "sync" switches verl's base class to asynchronous semantics, and "sync" is
        # taken; so the UEC trainer registers as "uec" and runs as "sync" (docs/design.md, "Trainer").
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        self.replay_buffer.poll_interval = min(self.replay_buffer.poll_interval, _POLL_INTERVAL_S)
        self.base_temperature = float(config.actor_rollout_ref.rollout.temperature)
        self.max_response_length = int(config.data.max_response_length)
        self.n0 = update_batch_rows(self.uec, config)
        self.batch_buffer = FifoBuffer(fifo_capacity(self.uec.batch_buffer.capacity_multiple, self.n0))
        self.replay_buffer_rows = FifoBuffer(fifo_capacity(self.uec.replay.capacity_multiple, self.n0))
        self.replay_rng = random.Random(self.uec.seed)
        self.replay_updates = 0
        self._step_prompts = None  # this step's prompt rows, kept to re-sample the difficult ones
        self._step_rows: KVBatchMeta | None = None  # this step's generated rows, for verl's data metrics

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
        # verl sleeps the rollout right after sampling; UEC samples twice per step, so it sleeps the rollout
        # itself after the exploration generation (waking it again would re-push unchanged weights).
        if not self.uec.enable:
            super().on_sample_end()

    def step(self, metrics: dict, timing_raw: dict) -> KVBatchMeta:
        if not self.uec.enable:
            self._step_rows = None
            return super().step(metrics, timing_raw)
        to_clear: list[str] = []

        # 1. regular rollout and its group advantages
        with marked_timer("gen", timing_raw, color="red"):
            self.prepare_step()
            regular, off_policy_metrics = self.replay_buffer.sample(
                global_steps=self.global_steps, partition_id=PARTITION, batch_size=self.config.data.train_batch_size
            )
            metrics.update(off_policy_metrics)
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            regular = self._canonical_order(regular, list(self._step_prompts["uid"]))
        with marked_timer("adv", timing_raw, color="brown"):
            regular_data = self._group_advantages(regular)

        # 2.-4. difficult prompts, exploration at T', advantages within exploration groups
        difficult = difficult_groups(regular_data, self.uec.exploration.difficulty_threshold)
        exploration, exploration_data = None, None
        if self.uec.exploration.enable and difficult:
            with marked_timer("gen_explore", timing_raw, color="red"):
                exploration, exploration_uids = self._explore(difficult)
            with marked_timer("uec_bookkeeping", timing_raw, color="white"):
                exploration = self._canonical_order(exploration, exploration_uids)
            with marked_timer("adv", timing_raw, color="brown"):
                exploration_data = self._group_advantages(exploration)
        self.checkpoint_manager.sleep_replicas()
        self._step_rows = regular

        # 5. selective retention
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            kept_regular = self._retain(regular, regular_data, exploration=False)
            kept_exploration = self._retain(exploration, exploration_data, exploration=True) if exploration else []
            kept_keys = {row.key for row in kept_regular + kept_exploration}
            to_clear += [key for key in regular.keys if key not in kept_keys]
            if exploration is not None:
                to_clear += [key for key in exploration.keys if key not in kept_keys]

            # 6. batch buffer
            overflow = self.batch_buffer.extend(kept_regular + kept_exploration)
            to_clear += [row.key for row in overflow]
            update_rows = self.batch_buffer.pop_oldest(self.n0) if len(self.batch_buffer) >= self.n0 else []

        if update_rows:
            trained = self._update_on_rows(update_rows, metrics, timing_raw)
            # 7a. replay admission: rows of this update with a high advantage, with their stored log-probs
            with marked_timer("uec_bookkeeping", timing_raw, color="white"):
                admitted = self._admit_to_replay(update_rows) if self.uec.replay.enable else []
                admitted_keys = {row.key for row in admitted}
                to_clear += [key for key in trained.keys if key not in admitted_keys]
                to_clear += [row.key for row in self.replay_buffer_rows.extend(admitted)]

        # 7b. the stabilizer: an extra, separate update on replay rows every f_replay steps
        replayed = []
        if self.uec.replay.enable and self.global_steps % self.uec.replay.frequency == 0:
            replayed = select_replay_rows(self.replay_buffer_rows.rows(), self.n0, self.replay_rng)
            if replayed:
                self._replay_update(replayed, metrics, timing_raw)

        metrics.update(
            self._uec_metrics(
                regular_data, difficult, exploration_data, kept_regular, kept_exploration, update_rows, replayed
            )
        )
        return KVBatchMeta(
            partition_id=PARTITION, keys=to_clear or [_NOTHING_TO_CLEAR], tags=[{}] * max(1, len(to_clear))
        )

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        # verl computes its data metrics (score, response length, advantages) over the batch step() returns; under
        # UEC that is the list of rows to delete, so report them over this step's regular rollout instead.
        if self._step_rows is not None:
            batch = self._step_rows
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
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
            write_atomically(os.path.join(folder, STATE_FILE), self._uec_state())
        super()._save_checkpoint()

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
        self._restore_uec_state(state)
        print(
            f"[uec] restored {len(self.batch_buffer)} batch-buffer rows and {len(self.replay_buffer_rows)} replay rows "
            f"from {folder}",
            flush=True,
        )

    def _uec_state(self) -> dict:
        def fields_of(rows):
            if not rows:
                return None
            return tq.kv_batch_get(keys=[r.key for r in rows], partition_id=PARTITION).cpu()

        batch_rows, replay_rows = self.batch_buffer.rows(), self.replay_buffer_rows.rows()
        return build_state(
            self.global_steps,
            batch_rows,
            fields_of(batch_rows),
            replay_rows,
            fields_of(replay_rows),
            self.replay_updates,
            self.replay_rng.getstate(),
        )

    def _restore_uec_state(self, state: dict) -> None:
        for name, buffer in (("batch_buffer", self.batch_buffer), ("replay_buffer", self.replay_buffer_rows)):
            rows = records_to_rows(state[name])
            if rows:
                tq.kv_batch_put(
                    keys=[r.key for r in rows],
                    partition_id=PARTITION,
                    fields=state[f"{name}_fields"],
                    tags=[dict(r.tag) for r in rows],
                )
            buffer.replace(rows)
        self.replay_updates = state["replay_updates"]
        self.replay_rng.setstate(state["replay_rng_state"])

    # ---- the stages ---------------------------------------------------------------------------------------------

    def _group_advantages(self, meta: KVBatchMeta) -> DataProto:
        """Score → advantage per uid group with the configured estimator; written back to TQ for the update."""
        fields = tq.kv_batch_get(
            keys=meta.keys, partition_id=meta.partition_id, select_fields=["uid", "response_mask", "rm_scores"]
        )
        response_mask = fields["response_mask"]
        data = DataProto(batch=fields.to_padded_tensor())
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
        return data

    def _explore(self, difficult: list[str]) -> tuple[KVBatchMeta, list[str]]:
        """Re-sample each difficult prompt G' times at T' as a new group (fresh uid, no '_' in it)."""
        prompts = self._step_prompts
        uid_to_row = {str(uid): row for row, uid in enumerate(prompts["uid"])}
        rows = [uid_to_row[uid] for uid in difficult]
        explore = tu.index_select_tensor_dict(prompts, rows)
        tu.assign_non_tensor_stack(explore, "uid", [uuid.uuid4().hex for _ in rows])
        tu.assign_non_tensor_stack(explore, "__rollout_n__", [int(self.uec.exploration.n)] * len(rows))
        tu.assign_non_tensor_stack(explore, TEMPERATURE_COLUMN, [float(self.uec.exploration.temperature)] * len(rows))
        self._submit_batch_to_rollout(explore)
        sampled, _ = self.replay_buffer.sample(
            global_steps=self.global_steps, partition_id=PARTITION, batch_size=len(rows)
        )
        return sampled, list(explore["uid"])

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

    def _retain(self, meta: KVBatchMeta, data: DataProto, exploration: bool) -> list[BufferedRow]:
        advantages = sequence_advantages(data)
        if not self.uec.retention.enable:
            keep = torch.ones_like(advantages, dtype=torch.bool)
        elif exploration:
            keep = keep_exploration(advantages, self.uec.exploration.retention)
        else:
            keep = keep_regular(advantages, self.uec.retention.regular_abs_adv)
        if exploration and self.uec.exploration.drop_overlong_positive:
            lengths = torch.tensor([tag["response_len"] for tag in meta.tags])
            keep &= ~overlong_positive(advantages, lengths, self.max_response_length)
        return [
            BufferedRow(key=key, tag=tag, advantage=float(adv), exploration=exploration, step=self.global_steps)
            for key, tag, adv, kept in zip(meta.keys, meta.tags, advantages.tolist(), keep.tolist())
            if kept
        ]

    def _update_on_rows(self, rows: list[BufferedRow], metrics: dict, timing_raw: dict) -> KVBatchMeta:
        """One PPO update on N0 buffered rows: fresh old/ref log-probs with the current weights, frozen advantages."""
        batch = KVBatchMeta(partition_id=PARTITION, keys=[r.key for r in rows], tags=[dict(r.tag) for r in rows])
        batch.extra_info["temperature"] = self.base_temperature
        batch = self._balance_batch(batch, metrics=metrics)
        with marked_timer("old_log_prob", timing_raw, color="blue"):
            batch = self._compute_old_log_prob(batch, metrics=metrics)
        if self.use_reference_policy:
            with marked_timer("ref", timing_raw, color="olive"):
                batch = self._compute_ref_log_prob(batch, metrics=metrics)
        # The meta returned by a TQ write lists the fields stored at that moment; the update must read all of them.
        batch.fields = None
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            metrics.update(self._entropy_by_origin(batch, rows))
        with marked_timer("update_actor", timing_raw, color="red"):
            batch = self._update_actor(batch, metrics=metrics)
        return batch

    def _admit_to_replay(self, rows: list[BufferedRow]) -> list[BufferedRow]:
        advantages = torch.tensor([row.advantage for row in rows])
        admitted = admit_to_replay(advantages, self.uec.replay.adv_threshold, self.uec.replay.admission)
        return [row for row, keep in zip(rows, admitted.tolist()) if keep]

    def _replay_update(self, rows: list[BufferedRow], metrics: dict, timing_raw: dict) -> None:
        """The extra update: no log-prob recompute, so the worker reads the stored old/ref log-probs and advantages."""
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

    def _uec_metrics(
        self, regular_data, difficult, exploration_data, kept_regular, kept_exploration, update_rows, replayed
    ) -> dict:
        metrics = {
            "uec/difficult_prompts": len(difficult),
            "uec/regular_samples": len(regular_data),
            "uec/regular_kept": len(kept_regular),
            "uec/exploration_samples": 0 if exploration_data is None else len(exploration_data),
            "uec/exploration_kept": len(kept_exploration),
            "uec/difficult_solved_by_exploration": 0,
            "uec/batch_buffer_size": len(self.batch_buffer),
            "uec/update_ran": int(bool(update_rows)),
            "uec/update_rows": len(update_rows),
            "uec/update_exploration_rows": sum(row.exploration for row in update_rows),
            "uec/trained_response_tokens": sum(row.tag["response_len"] for row in update_rows + replayed),
            "uec/replay_buffer_size": len(self.replay_buffer_rows),
            "uec/replay_rows": len(replayed),
            "uec/replay_updates_total": self.replay_updates,
            "uec/regular_accuracy": float((sequence_scores(regular_data) > 0).float().mean()),
        }
        if replayed:
            metrics["uec/replay_mean_advantage"] = float(np.mean([row.advantage for row in replayed]))
        if exploration_data is not None:
            scores = sequence_scores(exploration_data)
            groups = group_rows(exploration_data.non_tensor_batch["uid"])
            metrics["uec/difficult_solved_by_exploration"] = sum(
                bool((scores[rows] > 0).any()) for rows in groups.values()
            )
            metrics["uec/exploration_accuracy"] = float((scores > 0).float().mean())
        return metrics


def progress_line(metrics: dict, step: int, total_steps: int) -> str:
    """One compact line per step (verl's console logger prints every metric)."""

    def value(key, fmt="{:.3f}"):
        return fmt.format(metrics[key]) if key in metrics else "-"

    parts = [
        f"[uec] step {step}/{total_steps}",
        f"acc {value('critic/score/mean')}",
        f"entropy {value('actor/entropy')}",
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
