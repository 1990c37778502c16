"""The vision-language path end to end on CPU: ``quickstart_cpu.sh --task vlm`` trains UEC-RL on the tiny
Qwen2.5-VL-architecture policy with the real verl trainer (images in parquet -> RLHFDataset and processor ->
multimodal rollout -> actor forward with pixel_values, image_grid_thw and M-RoPE positions -> weight sync).

One run (a few minutes on 2 cores) is shared by the tests that read it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
STEPS = 4


@pytest.fixture(scope="module")
def vlm_run(vlm_demo, quickstart, tmp_path_factory):
    out = tmp_path_factory.mktemp("vlm-uec-run")
    rows, requests = quickstart(out, steps=STEPS, task="vlm")
    return rows, requests, out


def total(rows, key):
    return sum(r.get(key, 0) for r in rows)


def test_images_reach_the_rollout(vlm_run):
    rows, requests, out = vlm_run
    generated = [r for r in requests if r["event"] == "generate"]
    assert len(generated) >= 32 * STEPS
    assert all(r["num_images"] >= 1 for r in generated), "a request reached the rollout without its image"
    assert "Using dataset class: PILImageRLHFDataset" in (out / "train.log").read_text()


def test_actor_trains_on_images(vlm_run):
    rows, _, _ = vlm_run
    assert len(rows) == STEPS
    updated = [r for r in rows if r.get("uec/update_ran") == 1]
    assert updated, "no policy update ran"
    assert all(math.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0 for r in updated)
    # the reward is Geometry3K's grader on real samples: some are right, some wrong
    assert 0 < sum(r["critic/score/mean"] for r in rows) / len(rows) < 1


def test_weight_sync_changes_both_towers(vlm_run):
    _, requests, _ = vlm_run
    syncs = [r for r in requests if r["event"] == "update_weights"]
    assert len(syncs) >= 2
    vision = {s["tower_checksums"]["vision"] for s in syncs}
    language = {s["tower_checksums"]["language"] for s in syncs}
    assert len(vision) > 1, "the rollout never received changed vision-tower weights"
    assert len(language) > 1, "the rollout never received changed language-model weights"
    assert len({s["weights_checksum"] for s in syncs}) > 1


def test_uec_stages_act_on_the_vision_task(vlm_run):
    rows, requests, out = vlm_run
    assert total(rows, "uec/difficult_prompts") > 0
    assert total(rows, "uec/exploration_samples") > 0
    assert total(rows, "uec/regular_kept") > 0
    assert total(rows, "uec/replay_rows") > 0 or any(r.get("uec/replay_buffer_size", 0) > 0 for r in rows)
    hot = [r for r in requests if r["event"] == "generate" and r["temperature"] == 1.2]
    assert len(hot) == 8 * total(rows, "uec/difficult_prompts")
    assert all(r["num_images"] >= 1 for r in hot), "exploration re-samples lost their image"
    summary = (out / "summary.md").read_text()
    assert "difficult prompts found" in summary
    # buffered rows leave their pictures to the trainer (once per prompt) while they wait
    assert max(r["uec/buffered_image_bytes"] for r in rows) > 0
