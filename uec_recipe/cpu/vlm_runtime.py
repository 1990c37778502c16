"""Runtime shims of the CPU backend for vision-language runs: what every worker process needs to load a
Qwen2.5-VL checkpoint and its image rows without torchvision.

Two gaps of a CPU-only environment are closed here rather than in verl (both are verl extension points):

* transformers 5.10's ``Qwen2_5_VLProcessor`` requires a video processor, and every transformers video processor
  needs torchvision, which does not install beside the CPU torch. Importing this module registers an image-only
  subclass (same class name, so verl binds ``get_rope_index`` to it) for checkpoints whose saved files name no
  processor class (the tiny CPU demo model's, ``uec_lab/demo/vlm.py``); a real checkpoint names
  ``Qwen2_5_VLProcessor`` and is resolved by that name, untouched. verl imports the module in every worker through
  ``actor_rollout_ref.model.external_lib=uec_recipe.cpu.vlm_runtime``.
* verl's RLHFDataset extracts images with ``qwen_vl_utils``, which imports torchvision. ``PILImageRLHFDataset``
  (``data.custom_cls.path=pkg://uec_recipe.cpu.vlm_runtime data.custom_cls.name=PILImageRLHFDataset``) does the
  same extraction and resizing with PIL only.

Nothing here is needed on a GPU node, where vLLM installs torchvision (docs/vlm.md).
"""

from __future__ import annotations

import io
import math
import os

PATCH_SIZE = 14  # Qwen2.5-VL's vision patch (verl passes the processor's own; this is the default)
MERGE_SIZE = 2  # 2x2 patches merge into one language-model token
# Qwen2.5-VL's image and video placeholder tokens, for a tokenizer that does not name them itself.
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
# qwen_vl_utils' defaults for an image item without its own limits: 4 to 16384 merged tokens of 28x28 pixels.
FETCH_MIN_TOKENS, FETCH_MAX_TOKENS, FETCH_MAX_RATIO = 4, 16384, 200


# ---- the processor without a video processor (module docstring) --------------------------------------------


def _image_only_processor_class():
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor with its image processor and tokenizer only (no video, so no torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # transformers derives a processor's parts from this signature: no video_processor argument, no video
            # processor loaded. The token attributes are those Qwen2_5_VLProcessor.__init__ sets.
            self.image_token = getattr(tokenizer, "image_token", None) or IMAGE_PAD
            self.video_token = getattr(tokenizer, "video_token", None) or VIDEO_PAD
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

        def _process_videos(self, videos, **kwargs):
            raise ValueError("the CPU backend's image-only Qwen2.5-VL processor has no video processor (torchvision)")

    # verl's hf_processor binds Qwen2.5-VL's get_rope_index by class *name*: keep the name of the class it extends.
    # The qualified name stays this module's attribute, so pickle (datasets' length filter) finds the class.
    ImageOnlyQwen2_5_VLProcessor.__name__ = "Qwen2_5_VLProcessor"
    ImageOnlyQwen2_5_VLProcessor.__qualname__ = "ImageOnlyQwen2_5_VLProcessor"
    return ImageOnlyQwen2_5_VLProcessor


def register_image_only_processor():
    """Make ``AutoProcessor`` build the image-only processor for a Qwen2.5-VL checkpoint that names no processor
    class (only the tiny CPU demo model's files omit it; a real checkpoint names ``Qwen2_5_VLProcessor`` and is
    resolved by that name, untouched by this registration). Returns the class."""
    from transformers import AutoProcessor, Qwen2_5_VLConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    registered = PROCESSOR_MAPPING._extra_content.get(Qwen2_5_VLConfig)
    if registered is not None and getattr(registered, "_uec_image_only", False):
        return registered
    cls = _image_only_processor_class()
    cls._uec_image_only = True
    AutoProcessor.register(Qwen2_5_VLConfig, cls, exist_ok=True)
    return cls


ImageOnlyQwen2_5_VLProcessor = register_image_only_processor()


# ---- images without torchvision (the extraction qwen_vl_utils does for verl's RLHFDataset) ---------------------


def resize_for_vision(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen_vl_utils' resize rule: both sides multiples of ``factor`` (patch x merge), the area kept within
    [min_pixels, max_pixels] by one common scale, aspect ratio at most 200."""
    if max(height, width) / min(height, width) > FETCH_MAX_RATIO:
        raise ValueError(f"image aspect ratio above {FETCH_MAX_RATIO}: {height}x{width}")
    new_h = max(factor, round(height / factor) * factor)
    new_w = max(factor, round(width / factor) * factor)
    if new_h * new_w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        new_h = math.floor(height / scale / factor) * factor
        new_w = math.floor(width / scale / factor) * factor
    elif new_h * new_w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        new_h = math.ceil(height * scale / factor) * factor
        new_w = math.ceil(width * scale / factor) * factor
    return new_h, new_w


def fetch_image(item: dict, image_patch_size: int = PATCH_SIZE):
    """One image item of a chat message as the RGB PIL image the processor receives (qwen_vl_utils semantics for
    PIL images, raw bytes and local paths; no URLs)."""
    from PIL import Image

    image = item.get("image", item.get("image_url"))
    if isinstance(image, dict):  # {"bytes": ..., "path": ...} as stored in parquet
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        image = Image.open(path[len("file://") :] if path.startswith("file://") else path)
    if not isinstance(image, Image.Image):
        raise TypeError(f"unsupported image item {type(image).__name__}; expected a PIL image, bytes or a path")
    image = image.convert("RGB")
    factor = image_patch_size * MERGE_SIZE
    if "resized_height" in item and "resized_width" in item:
        height, width = resize_for_vision(
            item["resized_height"],
            item["resized_width"],
            factor,
            FETCH_MIN_TOKENS * factor * factor,
            FETCH_MAX_TOKENS * factor * factor,
        )
    else:
        height, width = resize_for_vision(
            image.height,
            image.width,
            factor,
            item.get("min_pixels", FETCH_MIN_TOKENS * factor * factor),
            item.get("max_pixels", FETCH_MAX_TOKENS * factor * factor),
        )
    return image if image.size == (width, height) else image.resize((width, height))


def extract_images(messages: list[dict], image_patch_size: int = PATCH_SIZE):
    """The images of chat messages in order, as ``fetch_image`` returns them; None when there are none."""
    images = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "video" or "video" in item:
                raise ValueError("PILImageRLHFDataset reads images only; video needs qwen_vl_utils (torchvision)")
            if item.get("type") in ("image", "image_url") or "image" in item:
                images.append(fetch_image(item, image_patch_size))
    return images or None


def _make_pil_dataset_class():
    from verl.utils.dataset.rl_dataset import RLHFDataset

    class PILImageRLHFDataset(RLHFDataset):
        """verl's RLHFDataset with its image extraction done by PIL instead of qwen_vl_utils (torchvision).

        Everything else is verl's. The agent loop calls ``process_multi_modal_info`` on the dataset class named
        by ``data.custom_cls``, so the rollout sees the same images as the dataset's length filter.
        """

        @classmethod
        def _process_multi_modal_info(cls, messages, image_patch_size, config):
            return extract_images(messages, image_patch_size), None, cls._extract_audio_info(messages)

    PILImageRLHFDataset.__qualname__ = "PILImageRLHFDataset"  # pickled by reference to this module's attribute
    return PILImageRLHFDataset


def __getattr__(name: str):
    # The dataset class needs verl (seconds to import), which the demo builder, importing this module for the
    # processor, does not: create it on first use.
    # verl's data.custom_cls loader reads it with getattr(module, "PILImageRLHFDataset").
    if name == "PILImageRLHFDataset":
        cls = _make_pil_dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
