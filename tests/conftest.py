"""Shared fixtures: the demo model and data are built once per machine (cached) and shared by every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def demo():
    """The warm-started demo policy and the digit-sum parquet files (built on first use, then cached)."""
    from uec_lab.demo.build import build_demo

    return build_demo(log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture(scope="session")
def random_tiny_model(tmp_path_factory):
    """A random-init Qwen2 with the demo tokenizer: fast to build, enough to exercise generation paths."""
    from uec_lab.demo.build import DemoSettings, build_random_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny-random")
    tokenizer = build_tokenizer(path)
    model = build_random_model(tokenizer, DemoSettings(hidden_size=32, intermediate_size=64, num_layers=1))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def vlm_demo():
    """The warm-started tiny VLM and its Geometry3K-format data (built on first use, then cached)."""
    from uec_lab.demo.vlm import build_vlm_demo

    return build_vlm_demo(log=lambda msg: print(msg, file=sys.stderr))
