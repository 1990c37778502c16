"""The quickstart as the e2e tests run it: small settings, the rollout's request log, metrics read back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from uec_recipe.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]

SMALL = [
    "data.train_batch_size=8",  # N0 = 8 x 4 = 32 rows
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.rollout.top_p=1.0",  # rollout and trainer log-probs then agree to ~1e-4 (sync check)
    "uec.replay.adv_threshold=0.0",
    "uec.replay.frequency=2",
    "trainer.val_before_train=False",
]


def _run_quickstart(
    out: Path, steps: int, algo: str = "uec", overrides=(), env_extra=None, task: str = "text"
) -> tuple[list[dict], list[dict]]:
    request_log = out / "rollout_requests.jsonl"
    env = {**os.environ, "UEC_ROLLOUT_REQUEST_LOG": str(request_log), **(env_extra or {})}
    cmd = [
        "bash",
        str(REPO / "run_scripts/quickstart_cpu.sh"),
        "--steps",
        str(steps),
        "--algo",
        algo,
        "--task",
        task,
        "--out",
        str(out),
        "--",
        *SMALL,
        *overrides,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    (out / "stdout.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"quickstart failed (log in {out}/stdout.log):\n{result.stderr[-4000:]}"
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] >= 1]
    requests = [json.loads(line) for line in request_log.read_text().splitlines()]
    return rows, requests


@pytest.fixture(scope="session")
def quickstart():
    """``quickstart(out, steps, algo="uec", overrides=(), env_extra=None, task="text")`` → (metric rows, requests)."""
    return _run_quickstart
