"""The UEC-RL training step, wired into verl 0.9.1's V1 trainer (``trainer.v1.trainer_mode=uec``).

``UECTrainer`` subclasses verl's synchronous V1 trainer and overrides only ``step()`` and the hooks around it;
``fit()``, checkpointing, validation, log-prob passes and the PPO update are verl's. One step reads like the
numbered algorithm (docs/algorithm.md, "The step"; paper §3):

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

Every decision of the step — and the state behind it: both buffers, the replay random stream, the explorations
in flight, the adaptive budget — belongs to ``UECPlanner`` (``uec_recipe/algo/planner.py``), a plain object fed
with keys, uids, accuracies and advantages. This module does the I/O around it: generation, scoring, TransferQueue
(TQ) reads and writes, the updates, pictures, the checkpoint files and verl's hooks. Rows live in TQ for as long as
a buffer holds them; the buffers hold keys. ``step()`` returns the keys that may be deleted, because ``fit()``
clears whatever ``step()`` returns. With ``uec.enable=false`` the step is verl's own, so the baselines run through
the same trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
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
from verl.workers.utils.padding import response_from_nested, response_to_nested

from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.algo.config import UECConfig, load_and_validate, update_batch_rows
from uec_recipe.algo.difficulty import sequence_accuracy, sequence_advantages
from uec_recipe.algo.entropy_metrics import (
    EXPLORATION,
    REGULAR,
    rollout_entropy_by_band,
    row_band,
    update_row_metrics,
)
from uec_recipe.algo.planner import ExplorationPlan, GeneratedRows, UECPlanner
from uec_recipe.baselines import apply_entropy_advantage, entropy_adv_config
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
from uec_recipe.liveness import rollout_actors, watch_rollout_actors
from uec_recipe.plain import from_plain
from uec_recipe.reward.faults import grader_error_share
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


@register_trainer("uec")
class UECTrainer(PPOTrainerSync):
    def __init__(self, config):
        self.uec: UECConfig = load_and_validate(config)
        self.entropy_adv = entropy_adv_config(config)  # parsed once; the values the shaping uses
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
        self.planner = UECPlanner(self.uec, update_batch_rows(self.uec, config), int(config.data.max_response_length))
        self._step_prompts = None  # this step's prompt rows, kept to re-sample the difficult ones
        self._step_rows: KVBatchMeta | None = None  # this step's regular rollout, for verl's data metrics
        self._rollout_asleep = True  # whether the rollout was put to sleep this step (it then needs the weights)
        # the pipelined schedule's exploration of the last step's difficult prompts, generated with this step's
        # regular rollout: the prompt rows (fresh uids, G', T'); the planner knows what each one is for
        self._pending_exploration: TensorDict | None = None
        self.buffered_images = BufferedImages()  # VLM rows' image inputs, once per prompt while buffered
        self._image_source: dict[str, str] = {}  # this step's exploration uid -> the prompt uid it re-samples

    # ---- hooks around verl's loop ---------------------------------------------------------------------------

    def fit(self, agent_loop_manager):
        # verl's sampler polls TransferQueue with no timeout: a dead agent-loop worker or rollout server would leave
        # the run waiting for ever (uec_recipe/liveness.py).
        watch_rollout_actors(
            self.replay_buffer, lambda: rollout_actors(agent_loop_manager, getattr(self, "llm_server_manager", None))
        )
        return super().fit(agent_loop_manager)

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
        planner, step = self.planner, self.global_steps
        to_clear: list[str] = []

        # 1. regular rollout and its group advantages; the pipelined schedule generates the exploration of the last
        #    step's difficult prompts in the same round
        pending = self._pending_exploration
        self._pending_exploration = None
        with marked_timer("gen", timing_raw, color="red"):
            if pending is not None:
                tu.assign_non_tensor_data(pending, "global_steps", step)
                self._submit_batch_to_rollout(pending)
            self.prepare_step()
            groups = self.config.data.train_batch_size + (0 if pending is None else len(pending))
            sampled, off_policy_metrics = self.replay_buffer.sample(
                global_steps=step, partition_id=PARTITION, batch_size=groups
            )
            metrics.update(off_policy_metrics)
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            regular_meta, explored_meta = self._split_exploration(sampled, pending)
        with marked_timer("adv", timing_raw, color="brown"):
            regular = self._score(regular_meta)
        self._step_rows = regular_meta
        exploration = None
        if explored_meta is not None:  # pipelined: the exploration generated in this round, recorded before the
            exploration = self._score_exploration(explored_meta, metrics, timing_raw)  # next split is planned

        # 2. difficult prompts: accuracy 0 on every sample
        difficult = planner.difficult_prompts(regular)
        # 3.-4. targeted exploration at T' under fresh uids (its own advantage groups): generated now, or with the
        #       next step's rollout under the pipelined schedule
        plan, batch = self._plan_exploration(difficult)
        if plan is not None and plan.deferred:
            self._pending_exploration = batch
        elif plan is not None:
            with marked_timer("gen_explore", timing_raw, color="red"):
                explored_meta = self._generate_exploration(batch)
            exploration = self._score_exploration(explored_meta, metrics, timing_raw)
        if getattr(self, "curr_step_profile", False):
            self._stop_rollout_profiling()  # verl stops it in on_sample_end, which the UEC step leaves to itself
        metrics["uec/exploration_pending"] = 0 if self._pending_exploration is None else len(self._pending_exploration)

        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            # 5. selective retention, exploration survivors first, overlong positives dropped
            retention = planner.retain(regular, exploration, step)
            to_clear += retention.discarded
            # 6. batch buffer: evict past capacity, then pop the oldest whole N0 blocks
            update = planner.plan_update(retention.survivors, step)
            to_clear += [row.key for row in update.evicted]
            self._strip_images([row.key for row in planner.batch_buffer.rows()])
        self._sleep_rollout_if_needed(trains=update.trains)

        if update.rows:
            trained = self._update_on_rows(update.rows, metrics, timing_raw)
            # 7a. replay admission: rows of this update with a high advantage, with their stored log-probs
            with marked_timer("uec_bookkeeping", timing_raw, color="white"):
                admission = planner.admit(update.rows)
                admitted_keys = {row.key for row in admission.admitted}
                to_clear += [key for key in trained.keys if key not in admitted_keys]
                to_clear += [row.key for row in admission.evicted]
                self._strip_images([row.key for row in admission.admitted if row.key not in to_clear])

        # 7c. the stabilizer: an extra, separate update on replay rows every f_replay steps
        replayed = planner.replay(step)
        if replayed:
            self._replay_update(replayed, metrics, timing_raw)
            self._strip_images([row.key for row in replayed])

        self.buffered_images.release(to_clear)
        self._image_source = {}
        metrics["uec/buffered_image_bytes"] = self.buffered_images.bytes_held()
        metrics.update(planner.step_metrics(regular, difficult, exploration, retention))
        metrics.update(planner.training_metrics(update.rows, replayed, step))
        metrics["uec/weight_sync_skipped"] = int(not self._rollout_asleep)
        metrics.update(self._rollout_entropy_metrics(regular_meta, "entropy/regular_rollout"))
        if exploration is not None:
            metrics.update(self._rollout_entropy_metrics(explored_meta, "entropy/exploration_rollout"))
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
            if self.config.trainer.get("critic_warmup", 0) <= global_steps:  # verl's actor update ran on them
                metrics.update(self._update_row_metrics(batch, "main"))
            tokens = sum(tag["seq_len"] for tag in batch.tags if not tag.get("is_padding", False))
            metrics.update({"tokens/generated": tokens, "tokens/trained": tokens})
        metrics.update(self._grader_error_metrics(batch))
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
        if self.entropy_adv.enable:
            batch = apply_entropy_advantage(batch, self.entropy_adv, metrics)
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
        buffers = self.planner.buffers()
        print(
            f"[uec] restored {len(buffers['batch_buffer'])} batch-buffer rows and {len(buffers['replay_buffer'])} "
            f"replay rows ({pending} prompts pending exploration) from {folder}",
            flush=True,
        )

    def _write_uec_state(self, folder: str) -> None:
        meta = {"global_steps": self.global_steps, **self.planner.state()}

        def fetch(keys):
            return tq.kv_batch_get(keys=keys, partition_id=PARTITION).cpu()

        write_state(
            folder, meta, self.planner.buffers(), fetch, self._pending_exploration, self.buffered_images.state()
        )

    def _restore_uec_state(self, folder: str, state: dict) -> None:
        buffers = {}
        for name in self.planner.buffers():
            rows = buffer_rows(state, name)
            tags = {row.key: dict(row.tag) for row in rows}
            for keys, fields in iter_buffer_shards(folder, state, name):
                tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=fields, tags=[tags[k] for k in keys])
            buffers[name] = rows
        saved = {name: from_plain(state.get(name)) for name in self.planner.state()}
        self.planner.restore(saved, buffers)
        self._pending_exploration = pending_exploration(state)
        images = buffered_images(folder, state)
        if images is not None:
            self.buffered_images.load(images)

    # ---- I/O around the planner's stages -------------------------------------------------------------------------

    def _score(self, meta: KVBatchMeta) -> GeneratedRows:
        """Advantages within each uid group (stages 1 and 4; written back to TQ for the update) and each row's
        accuracy, as the planner reads them."""
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
        uids = list(data.non_tensor_batch["uid"])
        return GeneratedRows(meta.keys, meta.tags, uids, accuracy, sequence_advantages(data), accuracy_source=source)

    def _plan_exploration(self, difficult: list[str]) -> tuple[ExplorationPlan | None, TensorDict | None]:
        """The planner's exploration of the difficult prompts and the batch that generates it: the prompts' rows
        with a fresh uid each (no '_' in it), G' samples (or the adaptive budget's share) and T'."""
        if not self.planner.explores(difficult):
            return None, None
        prompts = self._step_prompts
        uid_to_row = {str(uid): row for row, uid in enumerate(prompts["uid"])}
        batch = tu.index_select_tensor_dict(prompts, [uid_to_row[uid] for uid in difficult])
        keys = [prompt_key(batch, i) for i in range(len(difficult))]
        uids = [uuid.uuid4().hex for _ in difficult]
        plan = self.planner.plan_exploration(difficult, keys, uids, self.global_steps, self.total_training_steps)
        if plan is None:
            return None, None
        tu.assign_non_tensor_stack(batch, "uid", plan.uids)
        tu.assign_non_tensor_stack(batch, "__rollout_n__", plan.samples)
        tu.assign_non_tensor_stack(batch, TEMPERATURE_COLUMN, [plan.temperature] * len(plan.uids))
        return plan, batch

    def _score_exploration(self, meta: KVBatchMeta, metrics: dict, timing_raw: dict) -> GeneratedRows:
        with marked_timer("adv", timing_raw, color="brown"):
            exploration = self._score(meta)
        record = self.planner.record_exploration(exploration, self.global_steps)
        self._image_source.update(record.sources)
        metrics.update(record.metrics)
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
            metrics.update(self._update_row_metrics(batch, "main", rows))
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

    def _replay_update(self, rows: list[BufferedRow], metrics: dict, timing_raw: dict) -> None:
        """The extra update: no log-prob recompute, so the worker reads the stored old/ref log-probs and advantages.

        Before it, one forward pass measures π under the current weights on the replay rows for
        ``entropy/update_rows/replay`` (``_current_log_probs``); it writes nothing the update reads.
        """
        self.buffered_images.restore(tq, PARTITION, [r.key for r in rows])
        batch = KVBatchMeta(partition_id=PARTITION, keys=[r.key for r in rows], tags=[dict(r.tag) for r in rows])
        batch.extra_info["temperature"] = self.base_temperature
        batch = self._balance_batch(batch, metrics={})
        with marked_timer("uec_replay/log_prob", timing_raw, color="blue"):
            current = self._current_log_probs(batch)
        with marked_timer("uec_bookkeeping", timing_raw, color="white"):
            metrics.update(self._update_row_metrics(batch, "replay", rows, log_probs=current))
        replay_metrics: dict = {}
        with marked_timer("uec_replay/update_actor", timing_raw, color="red"):
            self._update_actor(batch, metrics=replay_metrics)
        metrics.update({f"uec_replay/{name}": value for name, value in replay_metrics.items()})
        # Padding rows that _balance_batch may have added belong to no buffer: delete them now.
        padding_keys = [key for key, tag in zip(batch.keys, batch.tags) if tag.get("is_padding", False)]
        if padding_keys:
            tq.kv_clear(keys=padding_keys, partition_id=PARTITION)

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

    def _update_row_metrics(
        self,
        batch: KVBatchMeta,
        update: str,
        rows: list[BufferedRow] | None = None,
        log_probs: dict[str, torch.Tensor] | None = None,
    ) -> dict:
        """``entropy/update_rows/<update>`` and ``entropy/cov_logp_adv/<update>`` over the rows of one actor update
        (``uec_recipe/algo/entropy_metrics.py``), from the fields that update reads: ``old_log_probs``,
        ``advantages`` (per token, as the loss sees them) and ``response_mask``. Padding rows are left out.

        The entropy figure is the released code's ``actor/entropy_loss`` (597358816/EFRame,
        ``verl/workers/actor/dp_actor.py``, ``update_policy``): mean −log π of the sampled tokens of the update's rows,
        π the weights the update starts from. For a main update (and every method's one update) those are the old
        log-probs verl computed right before it with the current weights, at the base temperature
        (``actor_rollout_ref.rollout.temperature``, the one the update's ratio uses; 1.0 by default as in the
        release, whose figure is at T = 1). A replay update's stored old log-probs date from the rows' first update,
        so its π comes in ``log_probs`` (key -> response log-probs, ``_current_log_probs``); its covariance keeps
        the stored old log-probs, which are the π_old its ratio uses. ``rows`` split both figures by origin.
        """
        keys = [key for key, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
        if not keys:
            return {}
        fields = ["old_log_probs", "advantages", "response_mask"]
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
        if set(fields) - set(data.keys()):
            return {}
        origins = None
        if rows is not None:
            exploration = {row.key for row in rows if row.exploration}
            origins = [EXPLORATION if key in exploration else REGULAR for key in keys]
        return update_row_metrics(
            update,
            data["old_log_probs"].unbind(),
            data["advantages"].unbind(),
            data["response_mask"].unbind(),
            origins=origins,
            log_probs=None if log_probs is None else [log_probs[key] for key in keys],
        )

    def _current_log_probs(self, batch: KVBatchMeta) -> dict[str, torch.Tensor]:
        """log π of the sampled response tokens of ``batch`` under the current weights at the base temperature, by
        key: one forward pass of verl's log-prob worker.

        verl's actor update reports no sampled-token log-prob (its ``actor/entropy_loss`` is the full-vocabulary
        entropy, and only with ``actor.calculate_entropy`` or an entropy coefficient), and in an update of several
        mini-batches the later ones run on weights already moved; a separate pass before the update gives exactly
        π at the start. It runs on a copy of the meta, so the update's own settings stay as they were, and without
        the entropy output. The worker writes into the rows' ``log_probs`` field, verl's scratch field for
        worker output (the old- and reference-log-prob passes both write there and copy it out): the actor update
        never reads it, and the stored ``old_log_probs``, ``ref_log_prob`` and ``advantages`` the replay update
        reads are not touched, so training is unchanged. The cost: one forward pass over the replay rows on replay
        steps (timed as ``uec_replay/log_prob``).
        """
        probe = KVBatchMeta(
            partition_id=batch.partition_id,
            keys=list(batch.keys),
            tags=[dict(tag) for tag in batch.tags],
            extra_info={
                **batch.extra_info,
                "calculate_entropy": False,
                "compute_loss": False,
                "temperature": self.base_temperature,
            },
        )
        self.actor_rollout_wg.compute_log_prob(probe)
        data = tq.kv_batch_get(
            keys=probe.keys, partition_id=probe.partition_id, select_fields=["log_probs", "response_mask"]
        )
        responses = response_from_nested(data["log_probs"], data["response_mask"])
        return dict(zip(probe.keys, responses.unbind()))

    def _grader_error_metrics(self, meta: KVBatchMeta) -> dict:
        """``reward/grader_error_rate``: the share of the step's rollout samples scored 0 because their grader raised
        (``on_grader_error=zero``, docs/faults-data.md); nothing when no sample carries the count."""
        keys = [key for key, tag in zip(meta.keys, meta.tags) if not tag.get("is_padding", False)]
        if not keys:
            return {}
        data = tq.kv_batch_get(keys=keys, partition_id=meta.partition_id, select_fields=["extra_fields"])
        if "extra_fields" not in data.keys():
            return {}
        share = grader_error_share(list(data["extra_fields"]))
        return {} if share is None else {"reward/grader_error_rate": share}

    def _rollout_entropy_metrics(self, meta: KVBatchMeta, name: str) -> dict:
        """Token-mean of −log q over the sampled response tokens: an unbiased estimate of the rollout's entropy.

        q is the distribution the rollout sampled from (base temperature and top_p for regular rows; verl asks
        the rollout for its processed log-probs), and E_{a~q}[−log q(a)] is q's entropy. The same figure for every
        method, with no extra forward pass (docs/algorithm.md, "Entropy"). ``<name>/<band>`` gives it per difficulty
        band, for the rows whose dataset row names one (``extra_info.band``, ``row_band``).
        """
        if not self.config.actor_rollout_ref.rollout.calculate_log_probs:
            return {}
        keys = [key for key, tag in zip(meta.keys, meta.tags) if not tag.get("is_padding", False)]
        if not keys:
            return {}
        data = tq.kv_batch_get(
            keys=keys, partition_id=meta.partition_id, select_fields=["rollout_log_probs", "extra_info"]
        )
        if "rollout_log_probs" not in data.keys():
            return {}
        values = data["rollout_log_probs"].values()
        if not values.numel():
            return {}
        metrics = {name: float(-values.float().mean())}
        if "extra_info" in data.keys():
            bands = [row_band(extra_info) for extra_info in data["extra_info"]]
            metrics.update(rollout_entropy_by_band(name, data["rollout_log_probs"].unbind(), bands))
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
