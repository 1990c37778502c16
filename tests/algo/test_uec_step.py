"""UECTrainer.step() without Ray: the I/O around the planner, with TransferQueue and verl's workers as fakes.

Every decision of the step is the planner's and is checked row by row in tests/algo/test_planner.py. What is
checked here is that the trainer carries them out: scores and advantages read from and written to TransferQueue
(through verl's estimator registry), the exploration batch submitted to the rollout, the rows handed to the
updates, the keys returned for deletion, when the rollout sleeps, pictures, and the checkpoint files. The
real-trainer path is covered by tests/e2e.
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
from uec_recipe.algo.config import UECConfig
from uec_recipe.trainer import UECTrainer

MAX_RESPONSE_LEN = 8
SHORT = 3  # response length of a sample that ended with EOS
LONG = MAX_RESPONSE_LEN  # a sample cut at max_response_length ("overlong")
PROMPT_LEN = 2  # prompt tokens in front of the response in the log-prob worker's output


class FakeTransferQueue:
    """Rows by key, returned the way TransferQueue returns them (jagged tensors, non-tensor stacks)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.cleared: list[str] = []

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        out = {}
        if select_fields is None:  # every field all the rows have, as TransferQueue returns them
            select_fields = sorted(set.intersection(*(set(self.rows[k]) for k in keys)))
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


def picture_inputs(picture: float) -> dict:
    return {"pixel_values": torch.full((16, 6), picture), "image_grid_thw": torch.tensor([[1, 4, 4]])}


def sample_spec(sample):
    """A scripted sample: a reward, or (reward, response length), or (reward, length, acc)."""
    if isinstance(sample, tuple):
        reward, length, *acc = sample
        return float(reward), int(length), (float(acc[0]) if acc else None)
    return float(sample), SHORT, None


class FakeRollout:
    """Plays verl's ReplayBuffer: returns finished groups whose samples the test scripted."""

    poll_interval = 2.0

    def __init__(self, store: FakeTransferQueue):
        self.store = store
        self.pending: deque = deque()  # (uid, [samples]) groups waiting to be "sampled"

    def add_group(self, uid, samples, picture=None):
        self.pending.append((uid, samples, picture))

    def sample(self, global_steps, partition_id, batch_size):
        keys, tags = [], []
        for _ in range(batch_size):
            uid, samples, picture = self.pending.popleft()
            for session, sample in enumerate(samples):
                reward, length, acc = sample_spec(sample)
                key = f"{uid}_{session}_0"
                scores = torch.zeros(length)
                scores[-1] = reward
                extra = {"reward_extra_info": {"acc": acc}} if acc is not None else {"reward_extra_info": {}}
                self.store.rows[key] = {
                    "uid": uid,
                    "response_mask": torch.ones(length),
                    "rm_scores": scores,
                    "responses": torch.tensor([session] + [0] * (length - 1)),
                    "extra_fields": extra,
                    # a vision-language row's processed picture (empty for text rows, as verl stores them)
                    "multi_modal_inputs": {} if picture is None else picture_inputs(picture),
                }
                keys.append(key)
                tags.append({"response_len": length, "seq_len": 10 + length})
        return KVBatchMeta(partition_id=partition_id, keys=keys, tags=tags), {}


def make_trainer(
    monkeypatch,
    uec_overrides=None,
    prompts=2,
    n=4,
    steps=(),
    explorations=(),
    save_freq=-1,
    store=None,
    pictures=False,
):
    """A UECTrainer whose Ray-side methods are fakes.

    ``steps``: per step, one list of samples per prompt. ``explorations``: the G' samples of each exploration
    group, in the order the step submits them. Exploration groups get uids e0, e1, ... (fresh, without '_').
    """
    store = store or FakeTransferQueue()
    monkeypatch.setattr(trainer_module, "tq", store)
    fresh = iter(range(1000))
    monkeypatch.setattr(trainer_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=f"e{next(fresh)}")))
    config = OmegaConf.create(
        {
            "data": {"train_batch_size": prompts, "max_response_length": MAX_RESPONSE_LEN},
            "algorithm": {"adv_estimator": "uec", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True},
            "actor_rollout_ref": {"rollout": {"n": n, "temperature": 1.0, "calculate_log_probs": False}},
            "trainer": {"n_gpus_per_node": 1, "nnodes": 1, "save_freq": save_freq},
        }
    )
    overrides = {"exploration": {"n": 4}, "replay": {"frequency": 1}}
    for section, values in (uec_overrides or {}).items():
        overrides[section] = {**overrides.get(section, {}), **values} if isinstance(values, dict) else values
    uec = UECConfig.from_mapping(overrides)
    trainer = UECTrainer.__new__(UECTrainer)
    trainer.config, trainer.uec = config, uec
    trainer.init_uec_state()
    trainer.global_steps, trainer.total_training_steps, trainer.use_reference_policy = 1, 100, True
    trainer.replay_buffer = FakeRollout(store)
    trainer.calls = {"update": [], "explore": [], "old_log_prob": 0, "sleep": 0, "updates_total": 0, "log_prob": []}
    # The fake policy: log π of every response token of a row, given how many actor updates ran so far.
    trainer.log_prob = lambda key, updates: -1.0
    trainer.checkpoint_manager = SimpleNamespace(sleep_replicas=lambda: trainer.calls.__setitem__("sleep", 1))
    script, exploration_script = deque(steps), deque(explorations)

    def prepare_step():
        uids = [f"p{trainer.global_steps}x{i}" for i in range(prompts)]
        batch = TensorDict({"dummy": torch.zeros(prompts)}, batch_size=[prompts])
        tu.assign_non_tensor_stack(batch, "uid", uids)
        # with pictures, each prompt of each step shows its own picture (a value unique to the prompt)
        values = [float(trainer.global_steps * 10 + i) if pictures else None for i in range(prompts)]
        tu.assign_non_tensor_stack(batch, "picture", values)
        # a prompt's identity across steps: prompt i of every step is the same question
        tu.assign_non_tensor_stack(
            batch, "raw_prompt", [[{"role": "user", "content": f"q{i}"}] for i in range(prompts)]
        )
        trainer._step_prompts = batch
        for uid, samples, picture in zip(uids, script.popleft(), values):
            trainer.replay_buffer.add_group(uid, samples, picture)

    def submit(batch):
        trainer.calls["explore"].append(batch)
        for uid, n, picture in zip(batch["uid"], batch["__rollout_n__"], batch["picture"]):
            samples = list(exploration_script.popleft()) if exploration_script else []
            # the rollout draws n samples of the same prompt, with the same picture
            trainer.replay_buffer.add_group(uid, (samples + [0.0] * n)[:n], picture)
        return len(batch)

    def current_log_probs(key):
        response_mask = store.rows[key]["response_mask"]
        return torch.full_like(response_mask, trainer.log_prob(key, trainer.calls["updates_total"]))

    def old_log_prob(batch, metrics):
        trainer.calls["old_log_prob"] += 1
        for key in batch.keys:
            store.rows[key]["entropy"] = torch.full_like(store.rows[key]["response_mask"], 0.5)
            store.rows[key]["old_log_probs"] = current_log_probs(key)
        return batch

    def compute_log_prob(meta):
        """verl's log-prob worker: log π over prompt and response into the rows' ``log_probs`` field, a response
        token's log-prob one position left of it; 99 marks the positions that belong to no response token."""
        trainer.calls["log_prob"].append((list(meta.keys), dict(meta.extra_info)))
        for key in meta.keys:
            padding = torch.full((PROMPT_LEN - 1,), 99.0), torch.full((1,), 99.0)
            store.rows[key]["log_probs"] = torch.cat([padding[0], current_log_probs(key), padding[1]])
        return meta

    def update_actor(batch, metrics):
        trainer.calls["update"].append(list(batch.keys))
        trainer.calls["updates_total"] += 1
        # what the update reads as its old log-probs
        trainer.calls.setdefault("update_old_log_probs", []).append(
            {key: store.rows[key]["old_log_probs"].clone() for key in batch.keys}
        )
        trainer.calls.setdefault("update_settings", []).append(dict(batch.extra_info))
        inputs = [store.rows[k]["multi_modal_inputs"] for k in batch.keys]
        trainer.calls.setdefault("update_inputs", []).append(inputs)
        metrics["actor/pg_loss"] = 0.0
        return batch

    trainer.prepare_step = prepare_step
    trainer._submit_batch_to_rollout = submit
    trainer._balance_batch = lambda batch, metrics: batch
    trainer._compute_old_log_prob = old_log_prob
    trainer._compute_ref_log_prob = lambda batch, metrics: batch
    trainer._update_actor = update_actor
    trainer.actor_rollout_wg = SimpleNamespace(compute_log_prob=compute_log_prob)
    return trainer, store


def run_step(trainer):
    metrics = {}
    trainer.calls["update"].clear()
    trainer.calls["sleep"] = 0
    cleared = trainer.step(metrics, {})
    trainer.global_steps += 1
    return metrics, cleared


def keys(prefix, sessions):
    return [f"{prefix}_{s}_0" for s in sessions]


# ---- the reference rules, step by step ----------------------------------------------------------------------------


def test_the_trainer_trains_on_and_deletes_the_rows_the_planner_decides(monkeypatch):
    """Steps 1-4 of the seven-step scenario of test_planner.py through the trainer: the updates verl runs, the
    replay update, the keys step() returns for deletion and the rows left in TransferQueue.

    P = 2 prompts x G = 4, N0 = 4 (uec.n0), G' = 4, batch and replay capacity 2*N0 = 8, A0 = 1, replay every 2.
    """
    steps = [
        [[(1, LONG), 0, 0, 0], [0, 0, 0, 0]],
        [[1, 0, 0, 0], [0, 0, 1, 0]],
        [[0, (1, LONG), 0, 0], [1, 1, 1, 1]],
        [[1, 0, 0, 0], [0, 0, 0, 1]],
    ]
    trainer, store = make_trainer(
        monkeypatch,
        uec_overrides={"n0": 4, "replay": {"frequency": 2, "adv_threshold": 1.0}},
        steps=steps,
        explorations=[[(1, LONG), 1, 0, 0]],
    )

    # step 1: exploration survivors first; every row is deleted (nothing is admitted to replay)
    m, cleared = run_step(trainer)
    assert trainer.calls["update"] == [keys("e0", [1]) + keys("p1x0", [1, 2, 3])]
    assert (m["uec/difficult_prompts"], m["uec/exploration_kept"], m["uec/regular_kept"]) == (1, 2, 4)
    assert set(cleared.keys) == set(keys("p1x0", range(4)) + keys("p1x1", range(4)) + keys("e0", range(4)))
    assert trainer.calls["sleep"] == 1

    # step 2: one update on 8 rows; the two admitted to replay stay in TransferQueue with their advantages
    m, cleared = run_step(trainer)
    assert trainer.calls["update"] == [keys("p2x0", range(4)) + keys("p2x1", range(4))]
    assert [r.key for r in trainer.planner.replay_buffer.rows()] == ["p2x0_0_0", "p2x1_2_0"]
    assert "p2x0_0_0" not in cleared.keys and "advantages" in store.rows["p2x0_0_0"]
    assert m["uec/replay_rows"] == 0  # replay due, but 2 rows < N0

    # step 3: 3 survivors < N0: no update, nothing trained, the rollout keeps its weights
    m, _ = run_step(trainer)
    assert trainer.calls["update"] == [] and m["uec/update_ran"] == 0 and m["uec/batch_buffer_size"] == 3
    assert m["uec/weight_sync_skipped"] == 1 and trainer.calls["sleep"] == 0

    # step 4: the 3 buffered rows are evicted and deleted; 8 rows trained, then the replay update on all 4
    # replay rows in the planner's random order, as a second call of verl's actor update
    m, cleared = run_step(trainer)
    assert set(keys("p3x0", [0, 2, 3])) <= set(cleared.keys)
    assert trainer.calls["update"][0] == keys("p4x0", range(4)) + keys("p4x1", range(4))
    replay_rows = ["p2x0_0_0", "p2x1_2_0", "p4x0_0_0", "p4x1_3_0"]
    assert trainer.calls["update"][1] == random.Random(0).sample(replay_rows, 4)
    assert m["uec/replay_rows"] == 4 and m["uec_replay/actor/pg_loss"] == 0.0
    assert m["tokens/trained"] == 12 * (10 + SHORT)
    assert all(key in store.rows for key in replay_rows) and not set(replay_rows) & set(cleared.keys)


# ---- edge cases ---------------------------------------------------------------------------------------------------


def test_no_difficult_prompt_submits_nothing(monkeypatch):
    trainer, _ = make_trainer(monkeypatch, steps=[[[1, 0, 0, 0], [1, 1, 1, 1]]])
    metrics, _ = run_step(trainer)
    assert metrics["uec/difficult_prompts"] == 0 and trainer.calls["explore"] == []


def test_difficult_prompts_are_resampled_at_the_exploration_temperature(monkeypatch):
    trainer, _ = make_trainer(monkeypatch, steps=[[[0, 0, 0, 0], [1, 0, 1, 0]]], explorations=[[1, 0, 0, 0]])
    metrics, _ = run_step(trainer)
    (explore,) = trainer.calls["explore"]
    assert len(explore) == 1
    assert list(explore["__rollout_n__"]) == [4] and list(explore["uec_temperature"]) == [1.2]
    assert explore["uid"][0] != "p1x0" and "_" not in explore["uid"][0]  # a fresh group id
    assert metrics["uec/difficult_prompts"] == 1 and metrics["uec/exploration_samples"] == 4
    assert metrics["uec/exploration_kept"] == 1 and metrics["uec/difficult_solved_by_exploration"] == 1


def test_difficulty_is_decided_on_accuracy_with_a_format_bonus(monkeypatch):
    # compute_score_with_format: a well-formatted wrong answer scores 0.1 with acc 0; the group is still difficult
    wrong, right = (0.1, SHORT, 0.0), (1.1, SHORT, 1.0)
    trainer, _ = make_trainer(
        monkeypatch, steps=[[[wrong] * 4, [right, wrong, wrong, wrong]]], explorations=[[right, wrong, wrong, wrong]]
    )
    metrics, _ = run_step(trainer)
    assert metrics["uec/difficult_prompts"] == 1 and metrics["uec/difficulty_on_accuracy"] == 1
    assert metrics["uec/regular_accuracy"] == pytest.approx(1 / 8)
    assert metrics["uec/exploration_accuracy"] == pytest.approx(1 / 4)


def test_difficult_prompts_with_no_exploration_survivor(monkeypatch):
    trainer, store = make_trainer(monkeypatch, steps=[[[0, 0, 0, 0], [1, 0, 0, 0]]])
    metrics, cleared = run_step(trainer)
    assert metrics["uec/exploration_samples"] == 4 and metrics["uec/exploration_kept"] == 0
    explore_keys = [k for k in store.cleared if not k.startswith("p1")]
    assert len(explore_keys) == 0 and len([k for k in cleared.keys if not k.startswith("p1")]) == 4


def test_every_group_filtered_skips_the_update_and_training_goes_on(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"enable": False}},
        steps=[[[1, 1, 1, 1], [1, 1, 1, 1]], [[1, 0, 1, 0], [0, 1, 0, 1]], [[1, 0, 0, 0], [0, 0, 0, 1]]],
    )
    first, cleared = run_step(trainer)
    assert first["uec/update_ran"] == 0 and len(cleared.keys) == 8 and trainer.calls["old_log_prob"] == 0
    second, _ = run_step(trainer)
    assert second["uec/update_ran"] == 1 and trainer.calls["update"] == [
        keys("p2x0", range(4)) + keys("p2x1", range(4))
    ]
    assert trainer.calls["old_log_prob"] == 1  # log-probs recomputed only for the popped rows


def test_replay_waits_for_n0_rows_then_replays_with_frozen_advantages(monkeypatch):
    trainer, store = make_trainer(
        monkeypatch, uec_overrides={"exploration": {"enable": False}}, steps=[[[1, 0, 0, 0], [0, 1, 0, 0]]] * 4
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
    assert len(trainer.calls["update"]) == 2 and len(trainer.calls["update"][1]) == 8
    assert trainer.calls["old_log_prob"] == 4  # replay reuses the stored log-probs
    # the advantages the replay update reads are the ones written at generation time
    assert all(float(store.rows[key]["advantages"][0]) == pytest.approx(1.5, abs=1e-4) for key in admitted)


def test_a_step_that_trains_nothing_sleeps_only_to_save(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"enable": False}, "replay": {"enable": False}},
        steps=[[[1, 1, 1, 1], [1, 1, 1, 1]]] * 2,
        save_freq=2,
    )
    first, _ = run_step(trainer)
    assert trainer.calls["sleep"] == 0 and first["uec/weight_sync_skipped"] == 1
    second, _ = run_step(trainer)  # step 2 saves a checkpoint: the rollout must free the device
    assert trainer.calls["sleep"] == 1 and second["uec/weight_sync_skipped"] == 0


def test_rollout_entropy_is_the_mean_negative_log_prob_of_the_sampled_tokens(monkeypatch):
    trainer, store = make_trainer(monkeypatch, steps=[[[1, 0, 0, 0], [0, 1, 0, 0]]])
    trainer.config.actor_rollout_ref.rollout.calculate_log_probs = True
    original = trainer.replay_buffer.sample

    def sample_with_log_probs(**kwargs):
        meta, metrics = original(**kwargs)
        for i, key in enumerate(meta.keys):
            store.rows[key]["rollout_log_probs"] = torch.full((SHORT,), -0.1 * (i % 2 + 1))
        return meta, metrics

    trainer.replay_buffer.sample = sample_with_log_probs
    trainer._sync_check = lambda rows: {}
    metrics, _ = run_step(trainer)
    assert metrics["entropy/regular_rollout"] == pytest.approx(0.15)


# ---- entropy measurements ------------------------------------------------------------------------------------------


def test_the_main_update_logs_the_papers_entropy_and_the_covariance_over_its_rows(monkeypatch):
    """Step 1: p1x0 = [1, 0, 0, 0] (lengths 2, 2, 4, 2), p1x1 all wrong and explored: e0 = [1, 0, 0, 0] (length 2).
    Â = +1.5 for a group's one correct sample, −0.5 for the others. Survivors e0_0, p1x0_0..3; N0 = 4 pops
    e0_0, p1x0_0, p1x0_1, p1x0_2, whose old log-probs (current weights) the fake policy sets per row:

        row        origin       log π   tokens   Â
        e0_0       exploration  −2.0    2        +1.5
        p1x0_0     regular      −0.5    2        +1.5
        p1x0_1     regular      −1.0    2        −0.5
        p1x0_2     regular      −1.0    4        −0.5

    entropy: (2·2 + 0.5·2 + 1·2 + 1·4) / 10 = 1.1 (per row it would be 1.125); regular 7 / 8 = 0.875; exploration 2.
    Cov over the 10 tokens: E[log π·Â] − E[log π]·E[Â] = −4.5/10 − (−1.1)(0.3) = −0.12; regular tokens only:
    E[log π·Â] = (−0.75·2 + 0.5·6) / 8 = 0.1875, E[Â] = 0, so 0.1875; one exploration row of equal tokens: 0.
    """
    trainer, store = make_trainer(
        monkeypatch,
        uec_overrides={"n0": 4},
        steps=[[[(1, 2), (0, 2), (0, 4), (0, 2)], [0, 0, 0, 0]]],
        explorations=[[(1, 2), 0, 0, 0]],
    )
    trainer.log_prob = lambda key, updates: {"e0_0_0": -2.0, "p1x0_0_0": -0.5}.get(key, -1.0)
    metrics, _ = run_step(trainer)
    assert trainer.calls["update"] == [["e0_0_0", "p1x0_0_0", "p1x0_1_0", "p1x0_2_0"]]
    assert metrics["entropy/update_rows/main"] == pytest.approx(1.1, abs=1e-6)
    assert metrics["entropy/update_rows/main/regular"] == pytest.approx(0.875, abs=1e-6)
    assert metrics["entropy/update_rows/main/exploration"] == pytest.approx(2.0, abs=1e-6)
    assert metrics["entropy/cov_logp_adv/main"] == pytest.approx(-0.12, abs=1e-5)
    assert metrics["entropy/cov_logp_adv/main/regular"] == pytest.approx(0.1875, abs=1e-5)
    assert metrics["entropy/cov_logp_adv/main/exploration"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["uec/replay_rows"] == 0 and not any("/replay" in name for name in metrics if "entropy" in name)
    assert trainer.calls["log_prob"] == []  # no extra forward pass without a replay update


def test_the_replay_update_measures_pi_under_the_current_weights_and_leaves_its_inputs_alone(monkeypatch):
    """The released code's |Â| > A0 admission, replay every 2 steps, N0 = 4, no exploration. Steps 1 and 2 both roll
    out [1, 1, 1, 0] (Â = +0.5 ×3, −1.5) and [1, 0, 0, 0] (+1.5, −0.5 ×3), all kept and trained; the −1.5 and +1.5
    rows are admitted, so step 2 replays p1x0_3, p1x1_0, p2x0_3, p2x1_0 (3 tokens each).

    The fake policy: log π = −c·(1 + u/2) after u updates, c = 0.5 for a correct row and 1 for a wrong one. The
    stored old log-probs date from each row's own update (u = 0 for step 1's rows, u = 1 for step 2's); the replay
    update starts from u = 2:

        row       Â      stored log π_old   log π now
        p1x0_3    −1.5   −1.0               −2.0
        p1x1_0    +1.5   −0.5               −1.0
        p2x0_3    −1.5   −1.5               −2.0
        p2x1_0    +1.5   −0.75              −1.0

    entropy/update_rows/replay = (2 + 1 + 2 + 1) / 4 = 1.5 (the stale log-probs would give 0.9375); the covariance
    uses the π_old the replay's ratio uses: E[log π_old·Â] = (1.5 − 0.75 + 2.25 − 1.125) / 4 = 0.46875, E[Â] = 0.
    """
    trainer, store = make_trainer(
        monkeypatch,
        uec_overrides={
            "n0": 4,
            "exploration": {"enable": False},
            "replay": {"frequency": 2, "admission": "abs_gt", "adv_threshold": 1.0},
        },
        steps=[[[1, 1, 1, 0], [1, 0, 0, 0]]] * 2,
    )

    def log_prob(key, updates):
        uid, session, _ = key.split("_")
        correct = int(session) < 3 if uid.endswith("x0") else session == "0"
        return -(0.5 if correct else 1.0) * (1 + updates / 2)

    trainer.log_prob = log_prob
    first, _ = run_step(trainer)
    assert first["uec/replay_rows"] == 0 and "entropy/update_rows/replay" not in first
    second, _ = run_step(trainer)
    replayed = {"p1x0_3_0", "p1x1_0_0", "p2x0_3_0", "p2x1_0_0"}
    assert second["uec/replay_rows"] == 4 and set(trainer.calls["update"][1]) == replayed
    assert second["entropy/update_rows/replay"] == pytest.approx(1.5, abs=1e-6)
    assert second["entropy/update_rows/replay/regular"] == pytest.approx(1.5, abs=1e-6)
    assert "entropy/update_rows/replay/exploration" not in second  # no exploration row was replayed
    assert second["entropy/cov_logp_adv/replay"] == pytest.approx(0.46875, abs=1e-4)
    assert second["uec/replay_negative_share"] == pytest.approx(0.5)
    # step 2's main update: 4 correct rows at −0.75 and 4 wrong ones at −1.5 (u = 1)
    assert second["entropy/update_rows/main"] == pytest.approx(1.125, abs=1e-6)

    # one extra forward pass, on the replay rows, at the base temperature, without entropy ...
    ((probed, settings),) = trainer.calls["log_prob"]
    assert set(probed) == replayed
    assert settings["temperature"] == 1.0 and settings["calculate_entropy"] is False
    # ... and the replay update reads the old log-probs stored at each row's first update, with its own settings
    stored = trainer.calls["update_old_log_probs"][-1]
    assert {key: float(stored[key][0]) for key in replayed} == {
        "p1x0_3_0": -1.0,
        "p1x1_0_0": -0.5,
        "p2x0_3_0": -1.5,
        "p2x1_0_0": -0.75,
    }
    assert trainer.calls["update_settings"][-1] == {"temperature": 1.0}


def with_rollout_fields(trainer, store, rollout_log_probs, extra_info):
    """The sampled rows also carry the rollout's log-probs and their dataset row's extra_info (by key, by uid)."""
    original = trainer.replay_buffer.sample

    def sample(**kwargs):
        meta, metrics = original(**kwargs)
        for key in meta.keys:
            store.rows[key]["rollout_log_probs"] = rollout_log_probs(key, len(store.rows[key]["response_mask"]))
            store.rows[key]["extra_info"] = extra_info(key.split("_")[0])
        return meta, metrics

    trainer.replay_buffer.sample = sample
    trainer.config.actor_rollout_ref.rollout.calculate_log_probs = True
    trainer._sync_check = lambda rows: {}


def test_rollout_entropy_is_split_by_the_band_in_extra_info(monkeypatch):
    """Three prompts: an easy one, a hard one and one whose extra_info names no band (its data source ends in a
    word, which is not read as a band). Rollout log-probs per token, by row:

        easy  p1x0: session 0 one token at −0.4, sessions 1-3 three tokens at −0.1 -> (0.4 + 0.9) / 10 = 0.13
        hard  p1x1: three tokens at −0.1·(session + 1)                            -> 3 · 1.0 / 12 = 0.25
        none  p1x2: three tokens at −1.0                                          -> not split
        all:  (1.3 + 3.0 + 12) / 34
    """
    trainer, store = make_trainer(
        monkeypatch,
        prompts=3,
        steps=[[[(1, 1), 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]],
    )

    def rollout_log_probs(key, length):
        uid, session, _ = key.split("_")
        value = {"p1x0": -0.4 if session == "0" else -0.1, "p1x1": -0.1 * (int(session) + 1), "p1x2": -1.0}[uid]
        return torch.full((length,), value)

    bands = {"p1x0": {"band": "easy", "index": 0}, "p1x1": {"band": "hard", "index": 1}, "p1x2": {"index": 2}}
    with_rollout_fields(trainer, store, rollout_log_probs, bands.get)
    metrics, _ = run_step(trainer)
    assert metrics["entropy/regular_rollout"] == pytest.approx(16.3 / 34, abs=1e-6)
    assert metrics["entropy/regular_rollout/easy"] == pytest.approx(0.13, abs=1e-6)
    assert metrics["entropy/regular_rollout/hard"] == pytest.approx(0.25, abs=1e-6)
    assert sorted(k for k in metrics if k.startswith("entropy/regular_rollout/")) == [
        "entropy/regular_rollout/easy",
        "entropy/regular_rollout/hard",
    ]


def test_every_other_method_logs_the_update_row_figures_of_its_one_update(monkeypatch):
    """GRPO through the same trainer (uec.enable=false): the step's update trained on the rows step() returned, so
    _compute_metrics reads the figures from them. A padding row (which verl's balancing may add) counts nowhere, nor
    does a masked token (a tool reply inside a response).

        row     band  log π_old (mask)              Â      rollout log q
        g0_0    easy  −0.2, −0.4                    +1     −0.3 ×2
        g0_1    easy  −1.0, −1.2                    −1     −0.5 ×2
        g1_0    hard  −2, −2, (−100 masked), −2     +0.5   −1.0 ×4

    entropy/update_rows/main = 8.8 / 7; Cov = E[log π·Â] − E[log π]·E[Â] = −1.4/7 − (−8.8/7)(1.5/7) = 3.4/49;
    rollout entropy 5.6 / 8 = 0.7, easy 1.6 / 4 = 0.4, hard 1.0.
    """
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    trainer, store = make_trainer(monkeypatch, uec_overrides={"enable": False})
    trainer.config.actor_rollout_ref.rollout.calculate_log_probs = True
    monkeypatch.setattr(PPOTrainerSync, "_compute_metrics", lambda self, *args: None)
    trainer._get_n_gpus_for_throughput = lambda: 1
    rows = {
        "g0_0_0": ("easy", [-0.2, -0.4], [1, 1], 1.0, -0.3),
        "g0_1_0": ("easy", [-1.0, -1.2], [1, 1], -1.0, -0.5),
        "g1_0_0": ("hard", [-2.0, -2.0, -100.0, -2.0], [1, 1, 0, 1], 0.5, -1.0),
        "pad_0_0": ("easy", [-50.0, -50.0], [1, 1], 9.0, -50.0),
    }
    for key, (band, old_log_probs, mask, advantage, rollout_log_prob) in rows.items():
        store.rows[key] = {
            "old_log_probs": torch.tensor(old_log_probs),
            "advantages": torch.full((len(mask),), advantage),
            "response_mask": torch.tensor(mask, dtype=torch.float32),
            "rollout_log_probs": torch.full((len(mask),), rollout_log_prob),
            "extra_info": {"band": band},
            "extra_fields": {"reward_extra_info": {}},
        }
    tags = [{"seq_len": 10 + len(row[2])} for row in rows.values()]
    tags[-1]["is_padding"] = True
    batch = KVBatchMeta(partition_id="train", keys=list(rows), tags=tags)

    metrics = {}
    trainer._compute_metrics(batch, metrics, {}, global_steps=1, epoch=0)
    assert metrics["entropy/update_rows/main"] == pytest.approx(8.8 / 7, abs=1e-6)
    assert metrics["entropy/cov_logp_adv/main"] == pytest.approx(3.4 / 49, abs=1e-6)
    assert metrics["entropy/regular_rollout"] == pytest.approx(0.7, abs=1e-6)
    assert metrics["entropy/regular_rollout/easy"] == pytest.approx(0.4, abs=1e-6)
    assert metrics["entropy/regular_rollout/hard"] == pytest.approx(1.0, abs=1e-6)
    assert not [name for name in metrics if name.startswith("entropy/update_rows/main/")]  # no origins outside UEC

    # before critic warm-up ends verl runs no actor update, so there are no update rows to describe
    trainer.config.trainer.critic_warmup = 2
    metrics = {}
    trainer._compute_metrics(batch, metrics, {}, global_steps=1, epoch=0)
    assert "entropy/update_rows/main" not in metrics and "entropy/regular_rollout" in metrics


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


# ---- beyond the paper: pipelined exploration and the adaptive budget ------------------------------------------------


def test_pipelined_exploration_is_generated_with_the_next_rollout(monkeypatch):
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"n0": 4, "exploration": {"schedule": "pipelined"}},
        steps=[[[1, 0, 0, 0], [0, 0, 0, 0]], [[1, 1, 1, 1], [0, 1, 0, 0]], [[0, 0, 0, 0], [1, 0, 0, 0]]],
        explorations=[[1, 0, 0, 0]],
    )
    trainer.total_training_steps = 3
    # step 1 finds p1x1 difficult but generates nothing for it yet
    first, _ = run_step(trainer)
    assert first["uec/difficult_prompts"] == 1 and first["uec/exploration_samples"] == 0
    assert first["uec/exploration_pending"] == 1 and trainer.calls["explore"] == []
    # step 2: its exploration arrives with step 2's rollout (one generation round), one step late
    second, _ = run_step(trainer)
    assert second["uec/exploration_samples"] == 4 and second["uec/exploration_kept"] == 1
    assert second["uec/exploration_lag"] == 1.0 and second["uec/exploration_pending"] == 0
    assert trainer.calls["update"][0][0] == "e0_0_0"  # exploration survivors first, generated at step 2
    assert trainer.calls["update"][0] == ["e0_0_0", "p2x1_0_0", "p2x1_1_0", "p2x1_2_0"]
    assert second["uec/regular_samples"] == 8  # the rollout's rows are told apart from the exploration's
    # step 3 is the last: the difficult prompt it finds is not deferred to a step that never comes
    third, _ = run_step(trainer)
    assert third["uec/difficult_prompts"] == 1 and third["uec/exploration_pending"] == 0
    assert trainer.planner.exploring == {} and len(trainer.calls["explore"]) == 1


def test_pending_exploration_and_budget_survive_a_checkpoint(monkeypatch, tmp_path):
    from uec_recipe.checkpoint import read_state

    overrides = {"n0": 4, "exploration": {"schedule": "pipelined", "budget": "adaptive"}}
    steps = [[[1, 0, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 1, 0, 0]], [[1, 0, 0, 1], [0, 0, 1, 0]]]
    trainer, store = make_trainer(monkeypatch, uec_overrides=overrides, steps=steps, explorations=[[1, 0, 0, 0]] * 3)
    run_step(trainer)
    run_step(trainer)  # explores p1x1 (step 1's), finds p2x0 difficult: pending again
    trainer._write_uec_state(str(tmp_path))
    state = read_state(tmp_path / "uec_state.pt")

    # a restarted run: TransferQueue has lost the buffered rows; the shards bring them back
    buffered = [r.key for r in trainer.planner.batch_buffer.rows() + trainer.planner.replay_buffer.rows()]
    saved = {key: dict(store.rows.pop(key)) for key in buffered}
    assert saved, "the scenario must leave rows in a buffer"
    restored, _ = make_trainer(
        monkeypatch, uec_overrides=overrides, steps=steps[2:], explorations=[[1, 0, 0, 0]], store=store
    )
    restored.global_steps = 3
    restored._restore_uec_state(str(tmp_path), state)
    assert list(restored._pending_exploration["uid"]) == list(trainer._pending_exploration["uid"])
    assert list(restored._pending_exploration["__rollout_n__"]) == list(trainer._pending_exploration["__rollout_n__"])
    assert restored.planner.exploring == trainer.planner.exploring
    assert restored.planner.exploration_budget.state() == trainer.planner.exploration_budget.state()
    assert [r.key for r in restored.planner.batch_buffer.rows()] == [r.key for r in trainer.planner.batch_buffer.rows()]
    for key, fields in saved.items():
        assert torch.equal(store.rows[key]["advantages"], fields["advantages"]), key
    metrics, _ = run_step(restored)
    assert metrics["uec/exploration_samples"] == sum(trainer._pending_exploration["__rollout_n__"])


def test_adaptive_budget_splits_the_same_total_by_history(monkeypatch):
    # two prompts difficult on every step; exploration always solves q0 (1 of 4) and never q1
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"budget": "adaptive", "enable": True}, "replay": {"enable": False}},
        steps=[[[0, 0, 0, 0], [0, 0, 0, 0]]] * 4,
        explorations=[[1, 0, 0, 0, 0, 0, 0, 0], [0] * 8] * 4,
    )
    allotted = []
    for _ in range(4):
        metrics, _ = run_step(trainer)
        n = list(trainer.calls["explore"][-1]["__rollout_n__"])
        allotted.append(n)
        assert sum(n) == 2 * 4  # the reference total: G' (4) per difficult prompt
        assert metrics["uec/budget_samples"] == 8 and metrics["uec/budget_realized_successes"] == 1
    assert allotted[0] == [4, 4]  # no history yet: the reference split
    assert allotted[-1][1] == 2  # the prompt that never succeeded keeps only the floor, never less
    history = trainer.planner.exploration_budget.history
    assert sorted(entry.explored for entry in history.values()) == [4, 4]


def test_a_checkpoint_without_uec_state_resumes_with_empty_buffers(monkeypatch, tmp_path, capsys):
    """A GRPO run's checkpoint (no uec_state.pt) resumes under UEC-RL with empty buffers and says so."""
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    trainer, _ = make_trainer(monkeypatch, steps=[])
    folder = tmp_path / "global_step_1"
    folder.mkdir()
    trainer.config.trainer.resume_mode = "resume_path"
    trainer.config.trainer.resume_from_path = str(folder)
    monkeypatch.setattr(PPOTrainerSync, "_load_checkpoint", lambda self: setattr(self, "global_steps", 1))
    trainer._load_checkpoint()
    assert f"{folder} has no uec_state.pt: resuming with empty buffers" in capsys.readouterr().out
    assert len(trainer.planner.batch_buffer) == 0 and len(trainer.planner.replay_buffer) == 0


def test_buffered_rows_hold_their_picture_once_per_prompt_and_train_on_it_whole(monkeypatch):
    """A vision-language row's image inputs leave TransferQueue while the row waits in a buffer (one copy per
    prompt is kept, exploration rows sharing their prompt's) and are back, identical, when an update reads it."""
    trainer, store = make_trainer(
        monkeypatch,
        uec_overrides={"n0": 16, "replay": {"enable": False}},
        steps=[[[1, 0, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 1, 0, 0]], [[0, 1, 1, 0], [1, 1, 1, 0]]],
        explorations=[[1, 0, 0, 0]],
        pictures=True,
    )
    run_step(trainer)  # 4 regular + 1 exploration survivors wait: two pictures (p1x0's, and p1x1's for e0)
    buffered = [row.key for row in trainer.planner.batch_buffer.rows()]
    assert len(buffered) == 5 and all(store.rows[key]["multi_modal_inputs"] == {} for key in buffered)
    assert len(trainer.buffered_images.inputs) == 2 and len(trainer.buffered_images) == 5
    run_step(trainer)  # 13 rows wait, pictures of 4 prompts
    assert len(trainer.buffered_images.inputs) == 4
    metrics, cleared = run_step(trainer)  # 21 >= 16: an update on the oldest 16
    (inputs,) = trainer.calls["update_inputs"]
    for key, given in zip(trainer.calls["update"][0], inputs):
        assert torch.equal(given["pixel_values"], picture_inputs(picture_of(key))["pixel_values"]), key
    left = [row.key for row in trainer.planner.batch_buffer.rows()]
    assert all(store.rows[key]["multi_modal_inputs"] == {} for key in left)
    assert set(trainer.buffered_images.owner) == set(left)  # trained rows let go of their pictures
    assert metrics["uec/buffered_image_bytes"] == trainer.buffered_images.bytes_held() > 0


def picture_of(key: str) -> float:
    """The picture a row shows in the scenario above: step s, prompt i -> 10 s + i; e0 re-samples p1x1."""
    uid = key.split("_")[0]
    if uid == "e0":
        return 11.0
    step, prompt = uid[1:].split("x")
    return float(int(step) * 10 + int(prompt))


def test_pipelined_allocation_uses_the_exploration_recorded_in_the_same_step(monkeypatch):
    # q1 is difficult at steps 1 and 2; step 2's round brings its first exploration: 3 of 4 correct
    trainer, _ = make_trainer(
        monkeypatch,
        uec_overrides={"exploration": {"schedule": "pipelined", "budget": "adaptive"}},
        steps=[[[1, 0, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 0, 0, 0]]],
        explorations=[[1, 1, 1, 0]],
    )
    trainer.total_training_steps = 5
    run_step(trainer)
    run_step(trainer)
    (plan,) = trainer.planner.exploring.values()  # the split planned at step 2 for q1's second exploration
    # its chance already counts the 3 successes in 4: (3 + 4 * mu) / (4 + 4), mu = (3 + 1) / (4 + 4) = 0.5
    assert plan["chance"] == pytest.approx(0.625)
