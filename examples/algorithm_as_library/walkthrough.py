"""UEC-RL's stages as plain functions: what each one decides on a hand-made batch, over three training steps.

    .venv/bin/python examples/algorithm_as_library/walkthrough.py

No Ray, no model, no trainer: the rollouts below are written by hand (which samples are correct, how long each
response is), and every decision is made by the functions of ``uec_recipe/algo/`` that the real training step calls
(``uec_recipe/trainer.py``), in the order of the step in docs/algorithm.md. Stage numbers in the output refer to that
page's table. Someone porting UEC-RL to another framework can read this file top to bottom as the step's recipe.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

import uec_recipe.algo.estimators  # noqa: F401  registers "uec" (the verl.plugins entry point does it in a run)
from uec_recipe.algo.buffers import BufferedRow, FifoBuffer, fifo_capacity, select_replay_rows, update_pop_size
from uec_recipe.algo.difficulty import difficult_groups, sequence_accuracy, sequence_advantages, sequence_scores
from uec_recipe.algo.retention import (
    admit_to_replay,
    keep_exploration,
    keep_regular,
    overlong_filter_applies,
    overlong_positive,
)

# Settings of this walkthrough; the paper's values, where they differ, are in brackets.
PROMPTS = 2  # P, prompts per step [512]
SAMPLES = 4  # G, samples per prompt [5]
N0 = PROMPTS * SAMPLES  # rows per policy update (uec.n0 = null: P x G)
EXPLORATION_SAMPLES = 4  # G' [20]
EXPLORATION_TEMPERATURE = 1.2  # T' (only a label here: the samples below are written by hand)
DIFFICULTY_THRESHOLD = 0.01  # difficult = every sample's accuracy below this
REGULAR_ABS_ADV = 0.05  # regular samples are kept when |Â| > this
MAX_RESPONSE_LENGTH = 8  # data.max_response_length [2048]
BATCH_BUFFER_MULTIPLE = 2  # batch buffer capacity, in N0
REPLAY_THRESHOLD = 0.5  # A0: rows of an update with Â > A0 enter the replay buffer [1.0]
REPLAY_MULTIPLE = 2  # s', replay buffer capacity in N0
REPLAY_FREQUENCY = 3  # f_replay: a replay update every 3 steps [5], so the third step replays
SEED = 0  # uec.seed: the replay sample's random stream

# The hand-made rollouts. Per step: each prompt's G samples as (correct, response length in tokens), and for each
# prompt the policy never solves, its G' exploration samples. A response of MAX_RESPONSE_LENGTH tokens hit the limit.
ROLLOUTS = [
    {  # step 1
        "regular": {"A": [(1, 3), (0, 5), (1, 4), (0, 6)], "B": [(0, 5), (0, 6), (0, 4), (0, 7)]},
        "exploration": {"B": [(1, 4), (1, 6), (0, 5), (0, 8)]},
    },
    {  # step 2
        "regular": {"C": [(0, 4), (1, 3), (1, 5), (0, 6)], "D": [(0, 6), (0, 5), (0, 7), (0, 4)]},
        "exploration": {"D": [(0, 5), (0, 6), (1, 4), (0, 7)]},
    },
    {  # step 3: E2 reaches the length limit with a correct answer, E4 with a wrong one
        "regular": {"E": [(1, 3), (1, 8), (1, 5), (0, 8)], "F": [(0, 5), (0, 4), (0, 6), (0, 6)]},
        "exploration": {"F": [(1, 5), (0, 6), (1, 4), (0, 7)]},
    },
]


def rollout_batch(groups: dict[str, list[tuple[int, int]]], suffix: str = "") -> tuple[DataProto, list[str]]:
    """The tensors verl's reward step leaves behind: an outcome reward on each response's last token."""
    samples = [(uid + suffix, correct, length) for uid, group in groups.items() for correct, length in group]
    mask = torch.zeros(len(samples), MAX_RESPONSE_LENGTH)
    rewards = torch.zeros(len(samples), MAX_RESPONSE_LENGTH)
    for row, (_, correct, length) in enumerate(samples):
        mask[row, :length] = 1
        rewards[row, length - 1] = float(correct)
    data = DataProto.from_dict(
        tensors={"response_mask": mask, "token_level_scores": rewards, "token_level_rewards": rewards},
        non_tensors={
            "uid": np.array([uid for uid, _, _ in samples], dtype=object),
            # what verl's reward loop stores beside the score; difficulty is decided on "acc"
            "extra_fields": np.array(
                [{"reward_extra_info": {"acc": float(correct)}} for _, correct, _ in samples], dtype=object
            ),
        },
    )
    labels = []
    for uid, group in groups.items():
        labels += [f"{uid}{suffix}{i}" for i in range(1, len(group) + 1)]
    return data, labels


def score_groups(data: DataProto) -> tuple[torch.Tensor, torch.Tensor]:
    """Stages 1 and 4: the "uec" estimator from verl's registry (GRPO within each uid group), and accuracy."""
    estimator = get_adv_estimator_fn("uec")
    advantages, returns = estimator(
        token_level_rewards=data.batch["token_level_rewards"],
        response_mask=data.batch["response_mask"],
        index=data.non_tensor_batch["uid"],
    )
    data.batch["advantages"], data.batch["returns"] = advantages, returns
    accuracy, source = sequence_accuracy(list(data.non_tensor_batch["extra_fields"]), sequence_scores(data))
    assert source == "acc"
    return sequence_advantages(data), accuracy


def say(stage: str, text: str) -> None:
    print(f"  {stage:<11} {text}")


def show_groups(stage: str, data: DataProto, advantages: torch.Tensor) -> None:
    """One line per group: which samples are correct, their response lengths and their advantages."""
    lengths = data.batch["response_mask"].sum(dim=-1).int().tolist()
    correct = sequence_scores(data).int().tolist()
    uids = list(data.non_tensor_batch["uid"])
    for uid in dict.fromkeys(uids):
        rows = [i for i, u in enumerate(uids) if u == uid]
        say(
            stage,
            f"{uid:<3} correct {' '.join(str(correct[i]) for i in rows)}"
            f"   length {' '.join(f'{lengths[i]:>2}' for i in rows)}"
            f"   Â {' '.join(f'{advantages[i]:+.3f}' for i in rows)}",
        )


def names(rows) -> str:
    return " ".join(row.key if isinstance(row, BufferedRow) else row for row in rows) or "-"


def main() -> None:
    batch_buffer = FifoBuffer(fifo_capacity(BATCH_BUFFER_MULTIPLE, N0))
    replay_buffer = FifoBuffer(fifo_capacity(REPLAY_MULTIPLE, N0))
    replay_rng = random.Random(SEED)
    print(
        f"P = {PROMPTS} prompts x G = {SAMPLES} samples, N0 = {N0} rows per update, G' = {EXPLORATION_SAMPLES} "
        f"at T' = {EXPLORATION_TEMPERATURE}, max response length {MAX_RESPONSE_LENGTH}, batch buffer "
        f"{batch_buffer.capacity} rows, replay Â > {REPLAY_THRESHOLD} into {replay_buffer.capacity} rows, "
        f"replay every {REPLAY_FREQUENCY} steps"
    )
    print("Rows are named by prompt and sample (A3: prompt A's third sample); B' is the exploration group of B.")
    for step, rollout in enumerate(ROLLOUTS, start=1):
        print(f"\nstep {step}")
        # 1. regular rollout, GRPO advantage within each prompt's group
        regular, regular_labels = rollout_batch(rollout["regular"])
        regular_adv, regular_acc = score_groups(regular)
        show_groups("1 rollout", regular, regular_adv)

        # 2. difficult prompts: every sample wrong
        difficult = difficult_groups(regular.non_tensor_batch["uid"], regular_acc, DIFFICULTY_THRESHOLD)
        say("2 difficult", names(difficult))

        # 3.-4. G' re-samples of each difficult prompt at T', as a group of their own (uid B -> B'),
        #       advantages within that group only
        explored = {uid: rollout["exploration"][uid] for uid in difficult}
        exploration, exploration_labels = rollout_batch(explored, suffix="'")
        exploration_adv, _ = score_groups(exploration)
        show_groups("3 explore", exploration, exploration_adv)

        # 5a-b. selective retention: regular |Â| > 0.05 (drops all-correct and all-wrong groups), exploration Â > 0
        keep_e = keep_exploration(exploration_adv, "positive")
        keep_r = keep_regular(regular_adv, REGULAR_ABS_ADV)
        say(
            "5 retain",
            f"exploration Â > 0: {names(x for x, k in zip(exploration_labels, keep_e) if k)}"
            f" | regular |Â| > {REGULAR_ABS_ADV}: {names(x for x, k in zip(regular_labels, keep_r) if k)}",
        )
        # 5c. survivors in the release's order: exploration first, then regular
        survivors = []
        for data, labels, advantages, keep, is_exploration in (
            (exploration, exploration_labels, exploration_adv, keep_e, True),
            (regular, regular_labels, regular_adv, keep_r, False),
        ):
            lengths = data.batch["response_mask"].sum(dim=-1).int().tolist()
            survivors += [
                BufferedRow(
                    key=label, tag={"response_len": length}, advantage=float(adv), exploration=is_exploration, step=step
                )
                for label, length, adv, kept in zip(labels, lengths, advantages.tolist(), keep.tolist())
                if kept
            ]
        # 5d. drop survivors that hit the length limit with Â > 0 (scope "all": regular and exploration)
        advantages = torch.tensor([row.advantage for row in survivors])
        lengths = torch.tensor([row.tag["response_len"] for row in survivors])
        in_scope = overlong_filter_applies(torch.tensor([row.exploration for row in survivors]), "all")
        drop = (in_scope & overlong_positive(advantages, lengths, MAX_RESPONSE_LENGTH)).tolist()
        say(
            "5 overlong",
            f"length {MAX_RESPONSE_LENGTH} and Â > 0, dropped: {names(r for r, d in zip(survivors, drop) if d)}",
        )
        survivors = [row for row, d in zip(survivors, drop) if not d]

        # 6. batch buffer: append (evicting past capacity), then pop the oldest whole N0 blocks for one update
        evicted = batch_buffer.extend(survivors)
        say("6 buffer", f"+ {names(survivors)} -> {len(batch_buffer)} rows, evicted: {names(evicted)}")
        pop = update_pop_size(len(batch_buffer), N0)
        update_rows = batch_buffer.pop_oldest(pop)
        if update_rows:
            say("6 update", f"pops {pop} = {pop // N0} x N0 rows, oldest first: {names(update_rows)}")
            say("6 update", f"left in the buffer: {names(batch_buffer.rows())}")
        else:
            say("6 update", f"none: {len(batch_buffer)} < N0 = {N0} rows")

        # 7a-b. replay admission: rows of this update with Â > A0, with their frozen advantages
        if update_rows:
            admitted_mask = admit_to_replay(torch.tensor([r.advantage for r in update_rows]), REPLAY_THRESHOLD, "gt")
            admitted = [row for row, keep in zip(update_rows, admitted_mask.tolist()) if keep]
            evicted = replay_buffer.extend(admitted)
            say("7 admit", f"Â > {REPLAY_THRESHOLD}: {names(admitted)}, evicted: {names(evicted)}")
        say("7 replay", f"buffer {len(replay_buffer)} rows: {names(replay_buffer.rows())}")

        # 7c. every f_replay steps, an extra update on replay rows: the whole buffer when it is full, otherwise a
        #     uniform random sample of floor(size / N0) x N0 rows; nothing below N0 rows
        if step % REPLAY_FREQUENCY == 0:
            replayed = select_replay_rows(replay_buffer.rows(), N0, replay_buffer.capacity, replay_rng)
            state = "full" if len(replay_buffer) == replay_buffer.capacity else "not full"
            say(
                "7 replay",
                f"due, {state} ({len(replay_buffer)} of {replay_buffer.capacity} rows): one extra update on "
                f"{len(replayed)} rows: {names(replayed)}",
            )
        else:
            say("7 replay", f"not due (every {REPLAY_FREQUENCY} steps)")


if __name__ == "__main__":
    main()
