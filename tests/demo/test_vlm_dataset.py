"""The tiny VLM demo: Geometry3K-layout rows through data_prep's converter and verl's RLHFDataset, the saved
processor and model, the reward, and the difficulty spread of the warm start."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from data_prep.sources import DATASETS, THINK_BOXED_SUFFIX
from uec_recipe.data_schema import validate_rl_parquet
from uec_recipe.reward import compute_score

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GEO3K = DATASETS["geo3k_train"].source_id


def test_raw_rows_have_geometry3k_layout_and_convert(vlm_demo):
    raw = pq.read_table(next((vlm_demo.raw_dir / "data").glob("train-*.parquet")))
    assert raw.column_names == ["images", "problem", "answer"]
    features = json.loads(raw.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["images"]["feature"]["_type"] == "Image"  # a list of datasets.Image, as on the hub
    assert raw.column("problem")[0].as_py().startswith("<image>")

    for path, split in ((vlm_demo.train_file, "train"), (vlm_demo.test_file, "test")):
        rows = validate_rl_parquet(path, require_images=True, check_images=True)
        table = pq.read_table(path).to_pylist()
        assert len(table) == rows
        assert {row["data_source"] for row in table} == {GEO3K}
        content = table[0]["prompt"][0]["content"]
        assert content.startswith("<image>") and content.count("<image>") == 1 and "squares" in content
        assert content.endswith(THINK_BOXED_SUFFIX)
        assert table[0]["extra_info"]["split"] == split


def test_rows_round_trip_through_verls_rlhf_dataset(vlm_demo):
    from PIL import Image
    from verl.utils.tokenizer import hf_processor, hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from uec_recipe.cpu.vlm_runtime import PILImageRLHFDataset

    tokenizer = hf_tokenizer(str(vlm_demo.model_dir))
    processor = hf_processor(str(vlm_demo.model_dir))
    assert type(processor).__name__ == "Qwen2_5_VLProcessor" and hasattr(processor, "get_rope_index")
    # the length filter runs the processor over every row, as it does on the GPU run
    config = OmegaConf.create({"max_prompt_length": 256, "filter_overlong_prompts": True, "image_key": "images"})
    dataset = PILImageRLHFDataset(str(vlm_demo.test_file), tokenizer, config, processor)
    raw = pq.read_table(vlm_demo.test_file).to_pylist()
    assert len(dataset) == len(raw), "no prompt is over the limit"

    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    for index in (0, len(dataset) - 1):
        row = dataset[index]
        assert "images" not in row  # moved into the messages
        messages = row["raw_prompt"]
        items = [item for message in messages for item in message["content"]]
        image_items = [item for item in items if item["type"] == "image"]
        assert len(image_items) == raw[index]["prompt"][0]["content"].count("<image>") == len(raw[index]["images"])
        assert isinstance(image_items[0]["image"], Image.Image) and image_items[0]["image"].size == (56, 56)

        images, videos, _ = dataset._process_multi_modal_info(messages, 14, config)
        assert videos is None and len(images) == 1 and images[0].size == (56, 56)
        prompt_ids = builder.build_initial_tokens(messages, images=images)
        grid = processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
        pads = prompt_ids.count(processor.image_token_id)
        assert pads == int(grid.prod(-1).sum()) // 4 == 4  # one token per merged 2x2 patch group
        assert prompt_ids.count(tokenizer.convert_tokens_to_ids("<|vision_start|>")) == 1
        assert len(prompt_ids) <= 256


def test_fetch_image_follows_qwen_vl_utils_resize_rule():
    from PIL import Image

    from uec_recipe.cpu.vlm_runtime import fetch_image, resize_for_vision

    assert resize_for_vision(56, 56, 28, 4 * 784, 16384 * 784) == (56, 56)
    assert resize_for_vision(50, 61, 28, 4 * 784, 16384 * 784) == (56, 56)  # rounded to multiples of 28
    assert resize_for_vision(10, 10, 28, 4 * 784, 16384 * 784) == (56, 56)  # raised to the minimum area
    height, width = resize_for_vision(2000, 3000, 28, 4 * 784, 256 * 784)
    assert height % 28 == 0 and width % 28 == 0 and height * width <= 256 * 784
    image = fetch_image({"type": "image", "image": Image.new("L", (61, 50))})
    assert image.mode == "RGB" and image.size == (56, 56)
    large = {"type": "image", "image": Image.new("RGB", (224, 224)), "max_pixels": 112 * 112}
    assert fetch_image(large).size == (112, 112)  # an item's own limit wins over the default


def test_reward_scores_boxed_counts_with_the_geometry3k_grader():
    assert compute_score(GEO3K, "<think>1 2 3 4 5</think> \\boxed{5}", "5")["score"] == 1.0
    assert compute_score(GEO3K, "<think> </think> \\boxed{5}", "5")["score"] == 1.0
    assert compute_score(GEO3K, "<think>one, two</think> the answer is \\boxed{2}", "2")["score"] == 1.0
    assert compute_score(GEO3K, "<think> </think> \\boxed{6}", "5")["score"] == 0.0
    assert compute_score(GEO3K, "5", "5")["score"] == 0.0  # the template asks for \boxed{}


def test_saved_model_loads_with_auto_classes_and_generates(vlm_demo):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from uec_lab.demo.vlm import PromptEncoder, draw_squares

    processor = AutoProcessor.from_pretrained(vlm_demo.model_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    model = AutoModelForImageTextToText.from_pretrained(vlm_demo.model_dir).eval()
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.config.vision_config.depth == 2 and model.config.text_config.num_hidden_layers == 2

    import random

    encoder = PromptEncoder(processor, 56)
    image = draw_squares(2, random.Random(0), 56)
    input_ids = torch.tensor([encoder.prompts[0]])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            mm_token_type_ids=(input_ids == processor.image_token_id).long(),
            **encoder.pixels([image]),
            max_new_tokens=32,
            do_sample=False,
        )
    text = processor.tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=False)
    assert compute_score(GEO3K, text, "2")["score"] == 1.0, text
