"""The smoke checks on a real run: the CPU quickstart trains with the smoke's UEC settings and the agent loop's
request log on, and every check of uec_recipe/smoke/check.py passes on what it wrote.

This is the GPU smoke test's chain (verl's V1 trainer, agent-loop workers writing UEC_AGENT_REQUEST_LOG, the file
logger, the checkpoint with the UEC state, the checks) with the CPU backend in place of vLLM and CUDA.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from uec_recipe.smoke import check

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

STEPS, PROMPTS, N, G_PRIME = 3, 8, 4, 8
SMOKE_SETTINGS = [
    f"data.train_batch_size={PROMPTS}",
    f"actor_rollout_ref.rollout.n={N}",
    f"uec.exploration.n={G_PRIME}",
    "uec.n0=8",  # as run_scripts/gpu/smoke.sh: one mini-batch of 2 prompts x 4
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "uec.replay.frequency=1",
    "uec.replay.adv_threshold=0",
    "uec.retention.drop_overlong_positive=none",
    f"trainer.save_freq={STEPS}",
    "trainer.val_before_train=False",
]


def test_every_smoke_check_passes_on_a_cpu_run(demo, tmp_path):
    env = {**os.environ, "UEC_AGENT_REQUEST_LOG": str(tmp_path / check.REQUESTS_FILE)}
    cmd = ["bash", str(REPO / "run_scripts/quickstart_cpu.sh"), "--steps", str(STEPS), "--out", str(tmp_path), "--"]
    result = subprocess.run(cmd + SMOKE_SETTINGS, capture_output=True, text=True, timeout=1500, env=env)
    (tmp_path / "run.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"quickstart failed (log in {tmp_path}/run.log):\n{result.stderr[-3000:]}"
    expected = check.Expected(
        steps=STEPS,
        prompts=PROMPTS,
        n=N,
        temperature=1.0,
        top_p=0.99,
        exploration_n=G_PRIME,
        exploration_temperature=1.2,
    )
    checks = check.check_run(tmp_path, expected)  # the quickstart writes metrics.jsonl and checkpoints/ here
    assert all(c.passed for c in checks), "\n".join(c.line("cpu") for c in checks)
    # the final validation's requests (no row temperature) were logged too, and left out of the counts
    requests = check.read_jsonl(tmp_path / check.REQUESTS_FILE)
    regular, exploration, other, untagged = check.split_requests(requests, expected)
    assert len(regular) == STEPS * PROMPTS * N and not other and untagged
    assert {r["temperature"] for r in untagged} == {0.5}
