"""UECTrainer.step() on its edge cases, without Ray: verl's TransferQueue and workers are replaced by in-memory fakes.

The step's own code (advantages through verl's estimator registry, difficulty, exploration submission,
retention, buffers, update trigger, replay) runs unchanged; the real-trainer path is covered by tests/e2e.
"""

from __future__ import annotations

import random
from collections import deque
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import NonTensorStack, TensorDict
from transfer_queue import KVBatchMeta
from verl.utils import tensordict_utils as tu

import uec_recipe.algo.estimators  # noqa: F401
import uec_recipe.trainer as trainer_module
from uec_recipe.algo.buffers import FifoBuffer, fifo_capacity
from uec_recipe.algo.config import UECConfig, update_batch_rows
from uec_recipe.trainer import UECTrainer

RESPONSE_LEN = 3


class FakeTransferQueue:
    """Rows by key, returned the way TransferQueue returns them (jagged tensors, non-tensor stacks)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.cleared: list[str] = []

    def kv_batch_get(self, keys, partition_id, select_fields):
        out = {}
        for field in select_fields:
            values = [self.rows[k][field] for k in keys if field in self.rows[k]]
            if len(values) != len(keys):
                continue  # like TQ: a field not every row has is dropped
            if isinstance(values[0], torch.Tensor):
                out[field] = torch.nested.as_nested_tensor(values, layout=torch.jagged)
            else:
                out[field] = NonTensorStack(*values)
        return TensorDict(out, batch_size=[len(keys)])

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        for i, key in enumerate(keys):
            for name in fields.keys():
                self.rows.setdefault(key, {})[name] = fields[name][i]
        return KVBatchMeta(partition_id=partition_id, keys=list(keys), tags=[{}] * len(keys))

    def kv_clear(self, keys, partition_id):
        if not keys:
            raise ValueError("Received an empty list as keys.")
        for key in keys:
            self.rows.pop(key, None)
            self.cleared.append(key)


class FakeRollout:
    """Plays verl's ReplayBuffer: returns finished groups whose rewards the test chose."""

    poll_interval = 2.0

    def __init__(self, store: FakeTransferQueue):
        self.store = store
        self.pending: deque = deque()  # (uid, [rewards]) groups waiting to be "sampled"

    def add_group(self, uid, rewards):
        self.pending.append((uid, rewards))

    def sample(self, global_steps, partition_id, batch_size):
        keys, tags = [], []
        for _ in range(batch_size):
            uid, rewards = self.pending.popleft()
            for session, reward in enumerate(rewards):
                key = f"{uid}_{session}_0"
                scores = torch.zeros(RESPONSE_LEN)
                scores[-1] = reward
                self.store.rows[key] = {
                    "uid": uid,
                    "response_mask": torch.ones(RESPONSE_LEN),
                    "rm_scores": scores,
                    "responses": torch.tensor([session, 0, 0]),
                }
                keys.append(key)
                tags.append({"response_len": RESPONSE_LEN, "seq_len": 10})
        return KVBatchMeta(partition_id=partition_id, keys=keys, tags=tags), {}


def make_trainer(monkeypatch, uec_overrides=None, prompts=2, n=4, regular_rewards=(), exploration_rewards=None):
    """A UECTrainer whose Ray-side methods are fakes; regular_rewards: one reward list per prompt per step."""
    store = FakeTransferQueue()
    monkeypatch.setattr(trainer_module, "tq", store)
    config = OmegaConf.create(
        {
            "data": {"train_batch_size": prompts, "max_response_length": 8},
            "algorithm": {"adv_estimator": "uec", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True},
            "actor_rollout_ref": {"rollout": {"n": n, "temperature": 1.0}},
            "trainer": {"n_gpus_per_node": 1, "nnodes": 1},
        }
    )
    uec = UECConfig.from_mapping({"exploration": {"n": 4}, "replay": {"frequency": 1}, **(uec_overrides or {})})
    trainer = UECTrainer.__new__(UECTrainer)
    trainer.config, trainer.uec = config, uec
    trainer.base_temperature, trainer.max_response_length = 1.0, 8
    trainer.n0 = update_batch_rows(uec, config)
    trainer.batch_buffer = FifoBuffer(fifo_capacity(uec.batch_buffer.capacity_multiple, trainer.n0))
    trainer.replay_buffer_rows = FifoBuffer(fifo_capacity(uec.replay.capacity_multiple, trainer.n0))
    trainer.replay_rng, trainer.replay_updates = random.Random(0), 0
    trainer.global_steps, trainer.total_training_steps, trainer.use_reference_policy = 1, 10, True
    trainer._step_prompts, trainer._step_rows = None, None
    trainer.replay_buffer = FakeRollout(store)
    trainer.checkpoint_manager = SimpleNamespace(sleep_replicas=lambda: None)
    trainer.calls = {"update": [], "explore": [], "old_log_prob": 0}
    steps = deque(regular_rewards)

    def prepare_step():
        uids = [f"p{trainer.global_steps}x{i}" for i in range(prompts)]
        batch = TensorDict({"dummy": torch.zeros(prompts)}, batch_size=[prompts])
        tu.assign_non_tensor_stack(batch, "uid", uids)
        trainer._step_prompts = batch
        for uid, rewards in zip(uids, steps.popleft()):
            trainer.replay_buffer.add_group(uid, rewards)

    def submit(batch):
        trainer.calls["explore"].append(batch)
        for row, uid in enumerate(batch["uid"]):
            rewards = exploration_rewards(row) if exploration_rewards else [0.0] * uec.exploration.n
            trainer.replay_buffer.add_group(uid, rewards)
        return len(batch)

    def old_log_prob(batch, metrics):
        trainer.calls["old_log_prob"] += 1
        for key in batch.keys:
            store.rows[key]["entropy"] = torch.full((RESPONSE_LEN,), 0.5)
        return batch

    def update_actor(batch, metrics):
        trainer.calls["update"].append(list(batch.keys))
        metrics["actor/pg_loss"] = 0.0
        return batch

    trainer.prepare_step = prepare_step
    trainer._submit_batch_to_rollout = submit
    trainer._balance_batch = lambda batch, metrics: batch
    trainer._compute_old_log_prob = old_log_prob
    trainer._compute_ref_log_prob = lambda batch, metrics: batch
    trainer._update_actor = update_actor
    return trainer, store


def run_step(trainer):
    metrics = {}
    cleared = trainer.step(metrics, {})
    trainer.global_steps += 1
    return metrics, cleared


def test_no_difficult_prompt_means_no_exploration(monkeypatch):
    trainer, _ = make_trainer(monkeypatch, regular_rewards=[[[1, 0, 0, 0], [1, 1, 1, 1]]])
    metrics, _ = run_step(trainer)
    assert metrics["uec/difficult_prompts"] == 0 and metrics["uec/exploration_samples"] == 0
    assert trainer.calls["explore"] == []
    assert metrics["uec/regular_kept"] == 4  # the all-correct group has Â = 0 and is dropped


def test_difficult_prompts_are_resampled_at_the_exploration_temperature(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch, regular_rewards=[[[0, 0, 0, 0], [1, 0, 1, 0]]], exploration_rewards=lambda row: [1, 0, 0, 0]
    )
    metrics, _ = run_step(trainer)
    (explore,) = trainer.calls["explore"]
    assert len(explore) == 1
    assert list(explore["__rollout_n__"]) == [4] and list(explore["uec_temperature"]) == [1.2]
    assert explore["uid"][0] != "p1x0" and "_" not in explore["uid"][0]  # a fresh group id
    assert metrics["uec/difficult_prompts"] == 1 and metrics["uec/exploration_samples"] == 4
    assert metrics["uec/exploration_kept"] == 1 and metrics["uec/difficult_solved_by_exploration"] == 1


def test_difficult_prompts_with_no_exploration_survivor(monkeypatch):
    trainer, store = make_trainer(monkeypatch, regular_rewards=[[[0, 0, 0, 0], [1, 0, 0, 0]]])
    metrics, cleared = run_step(trainer)
    assert metrics["uec/exploration_samples"] == 4 and metrics["uec/exploration_kept"] == 0
    explore_keys = [k for k in store.cleared if not k.startswith("p1")]
    assert len(explore_keys) == 0 and len([k for k in cleared.keys if not k.startswith("p1")]) == 4


def test_every_group_filtered_skips_the_update_and_training_goes_on(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"enable": False}},
        regular_rewards=[[[1, 1, 1, 1], [1, 1, 1, 1]], [[1, 0, 1, 0], [0, 1, 0, 1]], [[1, 0, 0, 0], [0, 0, 0, 1]]],
    )
    first, cleared = run_step(trainer)
    assert first["uec/regular_kept"] == 0 and first["uec/update_ran"] == 0 and len(cleared.keys) == 8
    second, _ = run_step(trainer)
    assert second["uec/update_ran"] == 1 and second["uec/batch_buffer_size"] == 0  # 8 kept = N0
    assert trainer.calls["old_log_prob"] == 1  # log-probs recomputed only for the popped rows


def test_update_pops_the_oldest_n0_rows_and_keeps_the_rest(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"enable": False}, "replay": {"enable": False}},
        regular_rewards=[[[1, 0, 0, 0], [1, 1, 0, 0]], [[1, 0, 0, 0], [0, 0, 1, 0]], [[1, 0, 0, 1], [1, 0, 0, 0]]],
    )
    run_step(trainer)  # 8 rows kept → update at once
    assert trainer.calls["update"][0][:4] == ["p1x0_0_0", "p1x0_1_0", "p1x0_2_0", "p1x0_3_0"]
    metrics, _ = run_step(trainer)
    assert metrics["uec/update_ran"] == 1


def test_replay_waits_for_n0_rows_then_replays_with_frozen_advantages(monkeypatch):
    trainer, store = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"enable": False}},
        regular_rewards=[[[1, 0, 0, 0], [0, 1, 0, 0]]] * 4,
    )
    first, cleared = run_step(trainer)
    # 1-of-4 correct: Â = +1.5 for the correct row, -0.5 for the others; A0 = 1 admits the 2 correct rows
    assert first["uec/update_ran"] == 1 and first["uec/replay_buffer_size"] == 2 and first["uec/replay_rows"] == 0
    admitted = ["p1x0_0_0", "p1x1_1_0"]  # the correct row of each group
    assert all(k not in cleared.keys for k in admitted) and all(k in store.rows for k in admitted)
    for _ in range(3):
        metrics, _ = run_step(trainer)
    assert metrics["uec/replay_buffer_size"] == 8 and metrics["uec/replay_rows"] == 8
    assert metrics["uec/replay_mean_advantage"] == pytest.approx(1.5, abs=1e-4)
    assert len(trainer.calls["update"]) == 5  # 4 regular updates + 1 replay update
    assert trainer.calls["old_log_prob"] == 4  # replay reuses the stored log-probs


def test_batch_buffer_overflow_drops_the_oldest_rows(monkeypatch):
    trainer, store = make_trainer(
        monkeypatch,
        prompts=2,
        uec_overrides={"exploration": {"enable": False}},
        regular_rewards=[[[1, 0, 0, 0], [1, 1, 1, 1]], [[0, 1, 0, 0], [1, 1, 1, 1]]],
    )
    trainer.n0 = 16  # more than two steps of survivors: rows accumulate
    trainer.batch_buffer = FifoBuffer(6)
    first, _ = run_step(trainer)
    assert first["uec/batch_buffer_size"] == 4 and first["uec/update_ran"] == 0
    second, cleared = run_step(trainer)
    assert second["uec/batch_buffer_size"] == 6
    assert {"p1x0_0_0", "p1x0_1_0"} <= set(cleared.keys)  # the two oldest rows were evicted and are deleted
    assert [row.key for row in trainer.batch_buffer.rows()][:2] == ["p1x0_2_0", "p1x0_3_0"]


def test_rows_are_put_in_an_order_independent_of_arrival(monkeypatch):
    store = FakeTransferQueue()
    monkeypatch.setattr(trainer_module, "tq", store)
    arrivals = [("b_1_0", [7]), ("a_0_0", [9]), ("b_0_0", [3]), ("a_1_0", [2]), ("a_2_0", [9])]
    for key, tokens in arrivals:
        store.rows[key] = {"responses": torch.tensor(tokens)}
    meta = KVBatchMeta(partition_id="train", keys=[k for k, _ in arrivals], tags=[{"k": k} for k, _ in arrivals])
    ordered = UECTrainer._canonical_order(meta, ["a", "b"])
    assert ordered.keys == ["a_1_0", "a_0_0", "a_2_0", "b_0_0", "b_1_0"]  # prompt a first, then by response
    assert [t["k"] for t in ordered.tags] == ordered.keys
