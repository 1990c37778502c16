"""The quickstart as the e2e tests run it: small settings, the rollout's request logs, metrics read back.

Every run costs about a minute of Ray and worker start-up on 2 cores, so runs are session fixtures shared by the
tests that read them: ``uec_run`` (4 UEC-RL steps with a checkpoint at step 2) serves the stage, rollout, sync,
summary, checkpoint and smoke-check tests and is the run ``test_resume_cpu.py`` resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from uec_lab.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]

SMALL = [
    "data.train_batch_size=8",  # 8 prompts x 4 samples = 32 rows per step
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.rollout.top_p=1.0",  # rollout and trainer log-probs then agree to ~1e-6 (sync check)
    "uec.replay.adv_threshold=0.0",
    "uec.replay.frequency=2",
    "trainer.val_before_train=False",
    "data.filter_overlong_prompts=False",  # every demo prompt fits; the filter would tokenize all 2,048 at start-up
]
# uec_run: N0 = 16 rows (two mini-batches of 2 prompts x 4), so an update runs on most steps and replay early
UEC_RUN_STEPS = 4
UEC_RUN = [
    "uec.n0=16",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
    "trainer.save_freq=2",
]
AGENT_LOG = "agent_requests.jsonl"


def run_quickstart(
    out: Path, steps: int, algo: str = "uec", overrides=(), env_extra=None, task: str = "digits"
) -> tuple[list[dict], list[dict]]:
    request_log = out / "rollout_requests.jsonl"
    env = {**os.environ, "UEC_ROLLOUT_REQUEST_LOG": str(request_log), **(env_extra or {})}
    cmd = ["bash", str(REPO / "run_scripts/quickstart_cpu.sh"), "--steps", str(steps), "--algo", algo]
    cmd += ["--task", task, "--out", str(out), "--", *SMALL, *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    (out / "stdout.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"quickstart failed (log in {out}/stdout.log):\n{result.stderr[-4000:]}"
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] >= 1]
    requests = [json.loads(line) for line in request_log.read_text().splitlines()]
    return rows, requests


@pytest.fixture(scope="session")
def quickstart():
    """``quickstart(out, steps, algo="uec", overrides=(), env_extra=None, task="digits")`` → (metric rows, requests)."""
    return run_quickstart


@pytest.fixture(scope="session")
def uec_run_settings():
    """What the tests of uec_run need to know about it."""
    return {"steps": UEC_RUN_STEPS, "overrides": UEC_RUN, "agent_log": AGENT_LOG, "g_prime": 8, "prompts": 8, "n": 4}


@pytest.fixture(scope="session")
def uec_run(demo, tmp_path_factory):
    """(metric rows, rollout requests, output folder) of 4 UEC-RL steps, checkpointed at steps 2 and 4, with the
    agent loop's and the rollout servers' request logs on."""
    out = tmp_path_factory.mktemp("uec-run")
    logs = {"UEC_AGENT_REQUEST_LOG": str(out / AGENT_LOG), "UEC_SERVER_LOG": str(out / "server")}
    rows, requests = run_quickstart(out, UEC_RUN_STEPS, overrides=UEC_RUN, env_extra=logs)
    return rows, requests, out
