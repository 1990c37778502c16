"""Tiny random-init policies and data for the one-GPU smoke test, built offline from the CPU demos' builders.

The CPU demo policies have attention heads of 32 (text) and 16 (VLM, language model) dimensions; the GPU path's
kernels (vLLM's attention backends, flash-attn in the trainer) are built and tested for the head sizes real models
use, so the smoke policies keep the demos' architectures and tokenizers but use heads of ``MIN_HEAD_SIZE`` = 64:

* text  the digit-sum demo's tokenizer and Qwen2 policy (``uec_lab/demo/build.py``), 2 heads of 64;
* VLM   the counting demo's tokenizer and Qwen2.5-VL policy (``uec_lab/demo/vlm.py``), 2 text heads and 2 vision
        heads of 64, M-RoPE sections (8, 12, 12) = the 7B's (16, 24, 24) halved with the head size; its rows are
        written in Geometry3K's raw layout and converted by data_prep's Geometry3K converter, as in the demo.

No warm start: the smoke scores with a toy reward (``uec_lab.smoke.reward``) that a random policy meets.

The VLM is saved with Qwen2.5-VL's full processor (image and video processor), as a real checkpoint is, so verl's
dataset, its agent loop and vLLM load it through ``AutoProcessor`` exactly as they load Qwen2.5-VL-7B-Instruct.
Building that processor needs torchvision, which vLLM installs; so the VLM part builds on a GPU node only (the CPU
demo, which has no torchvision, uses the image-only processor of ``uec_recipe/cpu/vlm_runtime.py`` instead).

``python -m uec_lab.smoke.build --out DIR --print-env`` builds both (reusing an identical earlier build) and
prints ``SMOKE_TEXT_MODEL=...`` style assignments for ``run_scripts/gpu/smoke.sh``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from uec_lab.demo import vlm
from uec_lab.demo.build import (
    DemoArtifacts,
    DemoSettings,
    build_cached,
    build_random_model,
    build_tokenizer,
    rl_rows,
)
from uec_recipe.cpu.vlm_runtime import MERGE_SIZE, PATCH_SIZE

MIN_HEAD_SIZE = 64
BUILD_VERSION = 1  # bumped when the build changes in a way the settings below do not show

TEXT_SETTINGS = DemoSettings(hidden_size=128, intermediate_size=256, num_layers=2, num_heads=2, num_kv_heads=1)
VLM_SETTINGS = vlm.VlmSettings(
    hidden_size=128,
    intermediate_size=256,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    mrope_section=(8, 12, 12),  # sums to half the 64-dim head, as (16, 24, 24) does for the 7B's 128
    vision_hidden_size=128,
    vision_intermediate_size=256,
    vision_heads=2,
)
# Enough prompts for a few steps of 8 prompts without reusing one, and a small validation split.
TEXT_ROWS = {"train": 64, "test": 8}
TEXT_LEVELS = (4, 6, 8, 10)
VLM_ROWS = {"train": 32, "test": 8}


@dataclass(frozen=True)
class SmokeArtifacts(DemoArtifacts):
    """A smoke policy and its data, in the text demo's layout; ``build.json`` records what was built."""

    @property
    def report_file(self) -> Path:
        return self.root / "build.json"


@dataclass(frozen=True)
class SmokeVlmArtifacts(SmokeArtifacts):
    """The VLM smoke build: data named as data_prep names Geometry3K."""

    @property
    def train_file(self) -> Path:
        return self.root / "data" / f"{vlm.GEO3K_TRAIN}.parquet"

    @property
    def test_file(self) -> Path:
        return self.root / "data" / f"{vlm.GEO3K_TEST}.parquet"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _key(*parts) -> str:
    payload = json.dumps([BUILD_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def attention_head_sizes(config) -> dict[str, int]:
    """Per-head dimension of every attention stack of a saved/instantiated HF config (text, and vision if any)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    sizes = {"text": getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads}
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        sizes["vision"] = vision.hidden_size // vision.num_heads
    return sizes


def check_head_sizes(config, what: str) -> dict[str, int]:
    sizes = attention_head_sizes(config)
    small = {name: size for name, size in sizes.items() if size < MIN_HEAD_SIZE}
    if small:
        raise ValueError(
            f"{what}: attention head size {small} is below {MIN_HEAD_SIZE}; the GPU attention kernels the smoke test "
            "exercises are meant for real models' head sizes (raise hidden_size or lower the number of heads)"
        )
    return sizes


# ---- text --------------------------------------------------------------------------------------------------------


def build_text(out: Path, log=_log) -> SmokeArtifacts:
    """The text smoke policy (random init) and digit-sum rows in the demo's RL parquet layout."""
    import pandas as pd

    settings = TEXT_SETTINGS
    artifacts = SmokeArtifacts(Path(out) / f"text-{_key(asdict(settings), TEXT_ROWS, TEXT_LEVELS)}")

    def build_into(staging: Path) -> None:
        tokenizer = build_tokenizer(None, settings.vocab_size, settings.seed)
        model = build_random_model(tokenizer, settings)
        sizes = check_head_sizes(model.config, "text smoke policy")
        model.save_pretrained(staging / "model")
        tokenizer.save_pretrained(staging / "model")
        rng = random.Random(settings.seed + 2)
        (staging / "data").mkdir(parents=True)
        for split, count in TEXT_ROWS.items():
            rows = rl_rows(TEXT_LEVELS, count, rng, split)
            pd.DataFrame(rows).to_parquet(staging / "data" / f"{split}.parquet", index=False)
        report = {"head_sizes": sizes, "parameters": sum(p.numel() for p in model.parameters()), **TEXT_ROWS}
        (staging / "build.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "smoke text", build_into, log)
    return artifacts


# ---- vision-language -----------------------------------------------------------------------------------------------


def build_vl_processor(tokenizer, settings: vlm.VlmSettings):
    """Qwen2.5-VL's own processor class with an image and a video processor: what a real checkpoint names."""
    if importlib.util.find_spec("torchvision") is None:
        raise RuntimeError(
            "the VLM smoke policy is saved with Qwen2.5-VL's full processor, whose image and video processors need "
            "torchvision; it is installed with vLLM (pip install -e '.[gpu]', docs/gpu.md). Build it on the GPU node."
        )
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    patches = {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": 2}
    image_processor = Qwen2VLImageProcessor(min_pixels=settings.min_pixels, max_pixels=settings.max_pixels, **patches)
    video_processor = Qwen2VLVideoProcessor(**patches)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=vlm.CHAT_TEMPLATE,
    )


def image_tokens_after_reload(model_dir: Path, image_size: int) -> tuple[str, int]:
    """Reload the saved processor as verl and vLLM do (``AutoProcessor``) and count the image tokens of one picture."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    grid = processor.image_processor(images=[Image.new("RGB", (image_size, image_size))], return_tensors="pt")
    tokens = int(grid["image_grid_thw"].prod()) // (MERGE_SIZE**2)
    return type(processor).__name__, tokens


def write_vlm_data(data_dir: Path, raw_dir: Path, settings: vlm.VlmSettings = VLM_SETTINGS, log=_log) -> None:
    """Counting rows in Geometry3K's raw layout, converted by data_prep's Geometry3K converters (as the VLM demo)."""
    rng = random.Random(settings.seed + 2)
    counts = list(range(1, settings.max_count + 1))
    for split, rows in VLM_ROWS.items():
        split_counts = [counts[i % len(counts)] for i in range(rows)]
        raw = vlm.raw_geometry3k_rows(split_counts, rng, settings.image_size)
        vlm.write_raw_split(raw, raw_dir / "data" / f"{split}-00000-of-00001.parquet")
    vlm.convert_with_data_prep(raw_dir, data_dir, log=log)


def build_vlm(out: Path, log=_log) -> SmokeVlmArtifacts:
    """The VLM smoke policy (random init, full processor) and Geometry3K-format rows."""
    settings = VLM_SETTINGS
    artifacts = SmokeVlmArtifacts(Path(out) / f"vlm-{_key(asdict(settings), VLM_ROWS)}")

    def build_into(staging: Path) -> None:
        tokenizer = vlm.build_vl_tokenizer(settings)
        processor = build_vl_processor(tokenizer, settings)
        model = vlm.build_random_vlm(tokenizer, settings)
        sizes = check_head_sizes(model.config, "VLM smoke policy")
        model.save_pretrained(staging / "model")
        processor.save_pretrained(staging / "model")
        processor_class, image_tokens = image_tokens_after_reload(staging / "model", settings.image_size)
        expected_tokens = (settings.image_size // (PATCH_SIZE * MERGE_SIZE)) ** 2
        if processor_class != "Qwen2_5_VLProcessor" or image_tokens != expected_tokens:
            raise RuntimeError(
                f"the saved VLM smoke processor reloads as {processor_class} giving {image_tokens} image tokens per "
                f"picture; expected Qwen2_5_VLProcessor and {expected_tokens}"
            )
        write_vlm_data(staging / "data", staging / "raw", settings, log=log)
        report = {
            "head_sizes": sizes,
            "parameters": sum(p.numel() for p in model.parameters()),
            "processor": processor_class,
            "image_tokens_per_picture": image_tokens,
            **VLM_ROWS,
        }
        (staging / "build.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "smoke vlm", build_into, log)
    return artifacts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the builds (each in a subfolder keyed by settings)")
    parser.add_argument("--task", choices=("text", "vlm", "both"), default="both")
    parser.add_argument("--print-env", action="store_true", help="print SMOKE_<TASK>_{MODEL,TRAIN,TEST}=... lines")
    args = parser.parse_args(argv)
    builds = []
    try:
        if args.task in ("text", "both"):
            builds.append(("TEXT", build_text(Path(args.out))))
        if args.task in ("vlm", "both"):
            builds.append(("VLM", build_vlm(Path(args.out))))
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, artifacts in builds:
        paths = {"MODEL": artifacts.model_dir, "TRAIN": artifacts.train_file, "TEST": artifacts.test_file}
        for what, path in paths.items():
            print(f"SMOKE_{name}_{what}={path}" if args.print_env else f"{name.lower()} {what.lower()}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
