"""examples/other_model_family end to end: example 1's uec.sh (verl's own entry point plus UEC-RL's lines) trains the
tiny Llama of build_llama.py on CPU for three steps, through run.sh as its README runs it. This one run covers both
examples: UEC-RL added to a verl GRPO script, and a second model family.

Small settings in the manner of the other end-to-end tests (tests/e2e/conftest.py, SMALL and UEC_RUN): 8 prompts
x 4 samples per step, updates of N0 = 8 rows (one mini-batch of 2 prompts x 4) so that every step can update, and a
replay update every 2 steps with A0 = 0, so that all of UEC-RL's stages act within three steps.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uec_lab.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "other_model_family"
STEPS = 3
EXPLORATION_SAMPLES = 8  # G' as uec.sh sets it
N0 = 8
SMALL = [
    "data.train_batch_size=8",
    f"+uec.n0={N0}",  # uec.sh does not set uec.n0, so it takes a "+"
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "uec.replay.adv_threshold=0.0",
    "uec.replay.frequency=2",
]

pytestmark = pytest.mark.e2e


def load_builder():
    spec = importlib.util.spec_from_file_location("build_llama", EXAMPLE / "build_llama.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def llama():
    """The warm-started Llama and its data, built into the cache on first use (what run.sh then reuses)."""
    return load_builder().build_llama(log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture(scope="module")
def uec_on_llama(llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("uec-on-llama")
    # the CPU rollout logs each weight push with a checksum of the weights it then holds (uec_recipe/cpu/hf_rollout.py)
    request_log = out / "rollout_requests.jsonl"
    env = {
        **os.environ,
        "OUT": str(out),
        "STEPS": str(STEPS),
        "PYTHON": sys.executable,
        "UEC_ROLLOUT_REQUEST_LOG": str(request_log),
    }
    for name in ("MODEL", "TRAIN", "TEST", "CPU", "DRY_RUN"):
        env.pop(name, None)
    result = subprocess.run(
        ["bash", str(EXAMPLE / "run.sh"), *SMALL], capture_output=True, text=True, timeout=1500, env=env
    )
    (out / "stdout.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"run.sh failed (logs in {out}):\n{result.stderr[-4000:]}"
    rows = [row for row in read_metrics(out / "metrics.jsonl") if row["step"] >= 1]
    pushes = [r for r in map(json.loads, request_log.read_text().splitlines()) if r["event"] == "update_weights"]
    return rows, out, result.stdout, pushes


def total(rows, key):
    return sum(row.get(key, 0) for row in rows)


def test_the_policy_trained_is_a_llama(llama, uec_on_llama):
    rows, out, _, pushes = uec_on_llama
    config = json.loads((llama.model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is False  # unlike the Qwen2 demo: a separate lm_head goes through FSDP2
    log = (out / "train.log").read_text()
    # the run trained that folder (verl's task runner prints its resolved configuration), as a LlamaForCausalLM
    assert str(llama.model_dir) in log and "LlamaForCausalLM contains" in log
    # after the update the rollout generates with the trained Llama weights: the pushed weights changed
    assert any(row["uec/update_ran"] for row in rows)
    assert len(pushes) >= 2 and len({push["weights_checksum"] for push in pushes}) > 1


def test_uec_stages_act_on_the_llama(uec_on_llama):
    rows, _, stdout, _ = uec_on_llama
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    assert total(rows, "uec/difficult_prompts") > 0
    assert total(rows, "uec/exploration_samples") == EXPLORATION_SAMPLES * total(rows, "uec/difficult_prompts") > 0
    assert total(rows, "uec/regular_kept") > 0
    updated = [row for row in rows if row["uec/update_ran"] == 1]
    assert updated, "no policy update ran"
    assert all(row["uec/update_rows"] % N0 == 0 for row in updated)  # whole N0 blocks
    assert all(math.isfinite(row["actor/pg_loss"]) and 0 < row["actor/grad_norm"] < math.inf for row in updated)
    replayed = [row for row in rows if row["uec/replay_rows"] > 0]
    assert replayed and rows[-1]["uec/replay_updates_total"] >= 1, "no replay update ran"
    assert all(math.isfinite(row["uec_replay/actor/pg_loss"]) for row in replayed)
    # uec.sh ends with one line per step (show_steps.py), UEC-RL's stages included
    assert sum(line.startswith("step ") and "| difficult " in line for line in stdout.splitlines()) == STEPS
