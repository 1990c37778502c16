"""Where samples come from: the model path (plain HF dir or verl checkpoint) and the two generation backends.

Both backends sample with exactly the requested temperature and top_p (no top-k, no repetition penalty), so a
number means the same thing whichever backend produced it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Files that mean "a directory transformers can load weights from".
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


# generate(chats, n) -> for each chat, n response strings.
Generate = Callable[[list[list[dict[str, Any]]], int], list[list[str]]]


def _has_weights(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any((directory / f).is_file() for f in WEIGHT_FILES)


def resolve_model_path(path: str | os.PathLike) -> str:
    """Turn a model directory, a verl checkpoint directory or a hub id into something transformers/vLLM load.

    verl 0.9.1 saves checkpoints as {default_local_dir}/global_step_N/actor/ with sharded FSDP weights plus a
    `huggingface/` subfolder. That subfolder always holds config and tokenizer, but full weights only when
    `actor.checkpoint.save_contents` includes "hf_model". Accepted here: a plain HF model dir; the checkpoint root
    (follows latest_checkpointed_iteration.txt); a global_step_N dir; its actor/ dir; the huggingface/ dir.
    """
    text = str(path)
    candidate = Path(text).expanduser()
    if not candidate.exists():
        if text.startswith(("/", ".", "~")) or text.count("/") > 1:
            raise FileNotFoundError(f"model path not found: {text}")
        return text  # a hub id such as Qwen/Qwen2.5-Math-7B; the loader resolves it
    if _has_weights(candidate):
        return str(candidate)
    tracker = candidate / "latest_checkpointed_iteration.txt"
    if tracker.is_file():
        candidate = candidate / f"global_step_{int(tracker.read_text().strip())}"
    for hf_dir in (candidate / "actor" / "huggingface", candidate / "huggingface"):
        if hf_dir.is_dir():
            if _has_weights(hf_dir):
                return str(hf_dir)
            actor_dir = hf_dir.parent
            raise ValueError(
                f"{hf_dir} holds only config and tokenizer: verl writes full weights there only when "
                "actor.checkpoint.save_contents includes 'hf_model'. Merge the sharded actor first, e.g. "
                f"`python -m verl.model_merger merge --backend fsdp --local_dir {actor_dir} "
                f"--target_dir {actor_dir}/merged_hf`, and pass --model {actor_dir}/merged_hf"
            )
    raise ValueError(f"{candidate} is neither a model directory (config.json + weights) nor a verl checkpoint")


# ---------------------------------------------------------------------------------------------------------------
# Generation backends. Both sample with exactly temperature/top_p (no top-k, no repetition penalty), so that the
# numbers mean the same thing whichever backend produced them.


def chat_of(prompt: Any) -> list[dict[str, Any]]:
    """verl stores `prompt` as a list of {role, content} structs; parquet hands them back as numpy arrays."""
    return [{"role": str(message["role"]), "content": message["content"]} for message in list(prompt)]


def images_of(row: dict[str, Any]) -> list[Any]:
    """The row's images (verl's VLM schema), or [] for text rows, where parquet may give None or NaN."""
    images = row.get("images")
    return list(images) if images is not None and not isinstance(images, float) else []


class HFSampler:
    """Batched `generate` with left padding; CPU by default, the first GPU if there is one."""

    def __init__(self, model_path: str, temperature: float, top_p: float, max_new_tokens: int, seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        torch.manual_seed(seed)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        eos_ids = self.model.generation_config.eos_token_id
        eos_ids = [eos_ids] if isinstance(eos_ids, int) else list(eos_ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(self.tokenizer.eos_token_id)
        # A fresh config, not the model's generation_config.json: that file may carry top_k or a repetition
        # penalty (Qwen2.5-Instruct does) that would silently change what "temperature/top_p" sampling means.
        sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            top_k=0,
            eos_token_id=eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            do_sample=temperature > 0,
            **sampling,
        )

    def __call__(self, chats: list[list[dict[str, Any]]], n: int) -> list[list[str]]:
        import torch

        texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.no_grad():
            config = copy.deepcopy(self.generation_config)
            config.num_return_sequences = n
            output = self.model.generate(**batch, generation_config=config)
        responses = self.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        # generate() returns the n samples of each prompt next to each other.
        return [responses[i * n : (i + 1) * n] for i in range(len(chats))]


def make_vllm_sampler(
    model_path: str,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    tensor_parallel_size: int,
    mm_processor_kwargs: dict[str, Any] | None = None,
) -> Generate:
    """vLLM's offline engine. ``mm_processor_kwargs`` goes to ``vllm.LLM`` unchanged: the image processor's settings
    (Qwen2.5-VL's min_pixels / max_pixels decide how many patches an image becomes), which must be the training
    run's (``data.mm_processor_kwargs``) for evaluation to see images as the policy saw them in training."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as error:
        raise SystemExit(
            "--backend vllm needs vLLM, which is not installed here (GPU nodes: pip install -e '.[gpu]'). "
            "Use --backend hf to sample with transformers instead."
        ) from error
    engine_args: dict[str, Any] = {"model": model_path, "seed": seed, "tensor_parallel_size": tensor_parallel_size}
    if mm_processor_kwargs is not None:
        engine_args["mm_processor_kwargs"] = dict(mm_processor_kwargs)
    llm = LLM(**engine_args)

    def generate(chats: list[list[dict[str, Any]]], n: int) -> list[list[str]]:
        # Passing SamplingParams keeps vLLM from applying generation_config.json defaults (it does so only when
        # none are given); its default top_k already means "all tokens".
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
        outputs = llm.chat(chats, params, use_tqdm=False)
        return [[completion.text for completion in output.outputs] for output in outputs]

    return generate


def multimodal_chat(chat: list[dict[str, Any]], images: Sequence[Any]) -> list[dict[str, Any]]:
    """verl's VLM rows put `<image>` markers in the text and the images beside it; vLLM's chat API wants the
    OpenAI form, with each image as a content part (here a base64 data URL) in place of its marker."""
    remaining = list(images)
    converted = []
    for message in chat:
        content = message["content"]
        if not isinstance(content, str) or "<image>" not in content:
            converted.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for index, text in enumerate(content.split("<image>")):
            if index > 0:
                if not remaining:
                    raise ValueError("more <image> markers than images in a row")
                parts.append({"type": "image_url", "image_url": {"url": _image_data_url(remaining.pop(0))}})
            if text:
                parts.append({"type": "text", "text": text})
        converted.append({"role": message["role"], "content": parts})
    if remaining:
        raise ValueError(f"{len(remaining)} image(s) without an <image> marker in the prompt")
    return converted


def _image_data_url(image: Any) -> str:
    """An image as data_prep stores it ({"bytes", "path"} struct, or raw bytes) as a base64 data URL."""
    import base64
    import io

    from PIL import Image

    raw = image.get("bytes") if isinstance(image, dict) else image
    if raw is None and isinstance(image, dict) and image.get("path"):
        raw = Path(image["path"]).read_bytes()
    if not isinstance(raw, bytes | bytearray):
        raise TypeError(f"cannot read an image from {type(image).__name__}")
    kind = (Image.open(io.BytesIO(raw)).format or "png").lower()
    return f"data:image/{kind};base64," + base64.b64encode(raw).decode("ascii")


def vllm_chat_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    chat = chat_of(row["prompt"])
    images = images_of(row)
    return multimodal_chat(chat, images) if images else chat
