"""The CPU 'hf' rollout with images: prompts built as verl's agent loop builds them, batched image requests,
M-RoPE positions that agree with the trainer's, and a weight sync that covers the vision tower."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def server(vlm_demo):
    from uec_recipe.cpu.hf_rollout import HFGenerationServer

    config = SimpleNamespace(prompt_length=256, response_length=32, seed=3)
    model_config = SimpleNamespace(
        local_path=str(vlm_demo.model_dir), trust_remote_code=False, external_lib="uec_recipe.cpu.vlm_runtime"
    )
    return HFGenerationServer(config, model_config)


@pytest.fixture(scope="module")
def agent_side(vlm_demo):
    """What verl's agent loop holds: tokenizer, processor (with get_rope_index bound), dataset, prompt builder."""
    from verl.utils.tokenizer import hf_processor, hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from uec_recipe.cpu.vlm_runtime import PILImageRLHFDataset

    tokenizer = hf_tokenizer(str(vlm_demo.model_dir))
    processor = hf_processor(str(vlm_demo.model_dir))
    config = OmegaConf.create({"max_prompt_length": 256, "filter_overlong_prompts": False})
    dataset = PILImageRLHFDataset(str(vlm_demo.test_file), tokenizer, config, processor)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    return SimpleNamespace(tokenizer=tokenizer, processor=processor, dataset=dataset, builder=builder)


def agent_prompt(agent_side, index):
    """(prompt_ids, images, ground truth) of one dataset row, rendered as SingleTurnAgentLoop renders it."""
    row = agent_side.dataset[index]
    messages = list(row["raw_prompt"])
    images, _, _ = agent_side.dataset._process_multi_modal_info(messages, 14, None)
    prompt_ids = agent_side.builder.build_initial_tokens(messages, images=images)
    return prompt_ids, images, row["reward_model"]["ground_truth"]


def generate_all(server, requests):
    async def run():
        return await asyncio.gather(
            *[
                server.generate(prompt_ids=ids, sampling_params=params, request_id=str(i), image_data=images)
                for i, (ids, images, params) in enumerate(requests)
            ]
        )

    return asyncio.run(run())


def test_image_requests_are_batched_and_match_one_at_a_time(server, agent_side):
    prompts = [agent_prompt(agent_side, i) for i in range(0, 40, 8)]  # one picture of each test count
    requests = [(ids, images, {"temperature": 0.0}) for ids, images, _ in prompts]
    batches_before = server.get_stats()["batches"]
    together = generate_all(server, requests)
    assert server.get_stats()["batches"] == batches_before + 1, "image requests sent together form one batch"
    alone = [generate_all(server, [request])[0] for request in requests]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    log = [r for r in server.get_request_log() if r["event"] == "generate"]
    assert all(r["num_images"] == 1 for r in log)
    # the warm-started policy answers in the template's format, and gets the fewest squares right
    texts = [agent_side.tokenizer.decode(o.token_ids, skip_special_tokens=False) for o in together]
    assert all("\\boxed{" in text for text in texts), texts
    assert f"\\boxed{{{prompts[0][2]}}}" in texts[0], (prompts[0][2], texts[0])


def test_rollout_logprobs_use_the_trainers_mrope_positions(server, agent_side, vlm_demo):
    """The rollout's sampling log-probs equal a teacher-forced forward with the position ids verl's agent loop
    computes for the trainer (text row + 3 M-RoPE rows). Without the token types the rollout would give image
    tokens text positions and the two would differ."""
    from transformers import AutoModelForImageTextToText
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    prompt_ids, images, _ = agent_prompt(agent_side, 33)
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}
    output = generate_all(server, [(prompt_ids, images, params)])[0]
    input_ids = torch.tensor([prompt_ids + output.token_ids])
    attention_mask = torch.ones_like(input_ids)
    pixels = agent_side.processor.image_processor(images=images, return_tensors="pt")
    multi_modal_inputs = {"image_grid_thw": pixels["image_grid_thw"], "mm_token_type_ids": torch.zeros(1)}
    position_ids = AgentLoopWorker._compute_position_ids(
        SimpleNamespace(processor=agent_side.processor), input_ids, attention_mask, multi_modal_inputs
    )  # (1, 4, length), as stored for the trainer
    assert position_ids.shape == (1, 4, input_ids.shape[1])
    image_positions = position_ids[0, 1:, input_ids[0] == server.image_token_id]
    assert not torch.equal(image_positions[1], image_positions[2]), "image tokens get 2-D (height, width) positions"

    model = AutoModelForImageTextToText.from_pretrained(vlm_demo.model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids.transpose(0, 1),
            pixel_values=pixels["pixel_values"],
            image_grid_thw=pixels["image_grid_thw"],
        ).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    response = torch.tensor(output.token_ids)
    start = len(prompt_ids)
    trainer = logprobs[start - 1 : start - 1 + len(response)].gather(1, response[:, None]).squeeze(1)
    assert torch.allclose(trainer, torch.tensor(output.log_probs), atol=1e-4), (trainer, output.log_probs)


def test_weight_sync_covers_the_vision_tower(server, vlm_demo):
    from transformers import AutoModelForImageTextToText

    # FSDP2 keeps the module's parameter names, and verl's convert_weight_keys leaves them alone for a model class
    # without _checkpoint_conversion_mapping: the trainer sends the HF state-dict names.
    fresh = AutoModelForImageTextToText.from_pretrained(vlm_demo.model_dir)
    assert getattr(fresh, "_checkpoint_conversion_mapping", None) is None
    state_dict = {name: tensor.clone() for name, tensor in fresh.state_dict().items()}
    assert any(name.startswith("model.visual.") for name in state_dict)

    def sync(weights):
        server.update_weights(weights, global_steps=1)
        return [r for r in server.get_request_log() if r["event"] == "update_weights"][-1]["tower_checksums"]

    before = sync(state_dict)
    nudged = {name: t + 0.01 if name.startswith("model.visual.") else t for name, t in state_dict.items()}
    after_vision = sync(nudged)
    assert after_vision["vision"] != before["vision"] and after_vision["language"] == before["language"]
    nudged = {name: t + 0.01 if not name.startswith("model.visual.") else t for name, t in state_dict.items()}
    after_language = sync(nudged)
    assert after_language["language"] != before["language"] and after_language["vision"] == before["vision"]
    with pytest.raises(RuntimeError, match="weight sync mismatch"):
        server.update_weights({"visual.blocks.0.attn.qkv.weight": torch.zeros(1)})
    assert sync(state_dict) == before


def test_image_tokens_must_match_the_images(server, agent_side):
    prompt_ids, images, _ = agent_prompt(agent_side, 0)
    pad = server.image_token_id
    without_one_pad = prompt_ids[: prompt_ids.index(pad)] + prompt_ids[prompt_ids.index(pad) + 1 :]
    with pytest.raises(ValueError, match="image tokens"):
        generate_all(server, [(without_one_pad, images, {"temperature": 0.0})])
