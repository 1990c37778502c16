"""uec_lab/smoke/build.py and reward.py on CPU: the smoke policies have 64-dim attention heads and run, their data
follow the RL parquet schema, and the toy reward is met by about one response in five."""

from __future__ import annotations

import importlib.util
import random
import string

import pytest
import torch

from uec_lab.demo import vlm
from uec_lab.demo.build import DemoSettings, build_random_model, build_tokenizer
from uec_lab.smoke import build, reward
from uec_recipe.data_schema import validate_rl_parquet


def test_text_build_has_64_dim_heads_and_valid_data(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logs = []
    artifacts = build.build_text(tmp_path, log=logs.append)
    config = AutoConfig.from_pretrained(artifacts.model_dir)
    assert build.attention_head_sizes(config) == {"text": 64}
    assert validate_rl_parquet(artifacts.train_file, require_images=False) == build.TEXT_ROWS["train"]
    assert validate_rl_parquet(artifacts.test_file, require_images=False) == build.TEXT_ROWS["test"]
    tokenizer = AutoTokenizer.from_pretrained(artifacts.model_dir)
    model = AutoModelForCausalLM.from_pretrained(artifacts.model_dir)
    ids = tokenizer("What is 1 + 2?", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))
    # an identical second build is reused, not rebuilt
    assert build.build_text(tmp_path, log=logs.append) == artifacts
    assert "reusing cached" in logs[-1]


def test_the_cpu_demo_head_sizes_are_refused():
    tokenizer = build_tokenizer(None)
    model = build_random_model(tokenizer, DemoSettings(hidden_size=32, intermediate_size=64, num_layers=1))
    with pytest.raises(ValueError, match="head size .*'text': 8.* below 64"):
        build.check_head_sizes(model.config, "demo policy")


def test_vlm_policy_has_64_dim_heads_and_runs_on_a_picture():
    settings = build.VLM_SETTINGS
    tokenizer = vlm.build_vl_tokenizer(settings)
    model = vlm.build_random_vlm(tokenizer, settings)
    assert build.check_head_sizes(model.config, "VLM smoke policy") == {"text": 64, "vision": 64}
    # M-RoPE sections cover half the head, as the 7B's (16, 24, 24) do for its 128-dim heads
    assert sum(settings.mrope_section) == 64 // 2
    # one forward with an image through the demo's image-only processor (the full one needs torchvision)
    encoder = vlm.PromptEncoder(vlm.build_processor(tokenizer, settings), settings.image_size)
    inputs, _ = encoder.batch([encoder.prompts[0]])
    picture = vlm.draw_squares(3, random.Random(0), settings.image_size)
    with torch.no_grad():
        logits = model(**inputs, **encoder.pixels([picture])).logits
    assert logits.shape == (1, len(encoder.prompts[0]), len(tokenizer)) and torch.isfinite(logits).all()


def test_vlm_data_are_geometry3k_rows_with_images(tmp_path):
    build.write_vlm_data(tmp_path / "data", tmp_path / "raw", log=lambda _: None)
    train = tmp_path / "data" / f"{vlm.GEO3K_TRAIN}.parquet"
    test = tmp_path / "data" / f"{vlm.GEO3K_TEST}.parquet"
    assert validate_rl_parquet(train, require_images=True) == build.VLM_ROWS["train"]
    assert validate_rl_parquet(test, require_images=True) == build.VLM_ROWS["test"]
    import pandas as pd

    assert set(pd.read_parquet(train)["data_source"]) == {vlm._geo3k_data_source()}


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision present (GPU node)")
def test_vlm_processor_without_torchvision_says_what_is_missing():
    tokenizer = vlm.build_vl_tokenizer(build.VLM_SETTINGS)
    with pytest.raises(RuntimeError, match="torchvision.*gpu"):
        build.build_vl_processor(tokenizer, build.VLM_SETTINGS)


def test_cli_prints_the_text_paths(tmp_path, capsys):
    assert build.main(["--out", str(tmp_path), "--task", "text", "--print-env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=")[0] for line in lines] == ["SMOKE_TEXT_MODEL", "SMOKE_TEXT_TRAIN", "SMOKE_TEXT_TEST"]
    assert all(line.split("=", 1)[1].startswith(str(tmp_path)) for line in lines)


def test_toy_reward_is_met_about_one_time_in_five():
    rng = random.Random(0)
    responses = ["".join(rng.choices(string.printable, k=24)) for _ in range(5000)]
    rate = sum(reward.compute_score("uec_demo/digit_sum", r, "7")["score"] for r in responses) / len(responses)
    assert 0.18 < rate < 0.22
    result = reward.compute_score("hiyouga/geometry3k", responses[0], "3")
    assert set(result) == {"score", "acc", "pred"} and result["score"] == result["acc"] in (0.0, 1.0)
    # deterministic, and the ground truth takes part (different prompts get different positives)
    assert [reward.is_positive(r, "7") for r in responses[:50]] == [reward.is_positive(r, "7") for r in responses[:50]]
    assert [reward.is_positive(r, "7") for r in responses[:200]] != [
        reward.is_positive(r, "8") for r in responses[:200]
    ]
