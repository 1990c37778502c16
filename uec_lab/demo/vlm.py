"""The vision-language CPU task: a tiny Qwen2.5-VL-architecture policy that counts squares, built offline.

Half of the paper trains Qwen2.5-VL-7B on Geometry3K. This module gives the same image path (parquet ``images``
-> verl's RLHFDataset and processor -> multimodal rollout -> actor forward with ``pixel_values``,
``image_grid_thw`` and M-RoPE positions) a model and a task small enough for 2 CPU cores (docs/vlm.md):

* task    a 56x56 picture with 1-12 black squares, one per 14x14 patch cell; a question such as
          ``<image>How many squares are in the image?`` (five phrasings); the answer the count. The rows are
          written in Geometry3K's raw layout (``images``, ``problem``, ``answer``) and converted by data_prep's own
          ``geo3k_train`` / ``geo3k_test`` converters (``--local-dir``), so they carry Geometry3K's data source,
          prompt template and grader (mathruler on the last ``\\boxed{}``, uec_recipe/reward/);
* policy  a random-init ``Qwen2_5_VLForConditionalGeneration``: 2-layer, 64-wide text model (M-RoPE) and a
          2-block vision tower (one windowed block, one full-attention block, as the 7B mixes them); the
          tokenizer is demo/build.py's with Qwen-VL's vision tokens and the Qwen2.5-VL chat template;
* warm start  supervised on ``<think>1 2 ... N</think> \\boxed{N}`` (counting out loud) with count weights
          min(1, 2^-(count-3)), so the policy counts few squares reliably and many rarely: all-correct, mixed and
          all-wrong groups occur;
* ladder  the greedy and sampled accuracy of every count is measured on the built policy and sorted into easy,
          medium and hard bands (``uec_lab/demo/ladder.py``); the task's counts are the ones that landed in the
          bands on this machine, and a build whose ladder lacks a band fails with the figures.

The image-only processor and the PIL dataset class every worker needs (torchvision is absent beside the CPU
torch) are the CPU backend's, ``uec_recipe/cpu/vlm_runtime.py``; this module builds the policy with that processor.

Everything is cached under ``$UEC_CACHE_DIR`` (default ``~/.cache/uec-rl``) keyed by the settings.
``python -m uec_lab.demo.vlm --print-env`` builds (or reuses) and prints ``DEMO_MODEL=... DEMO_TRAIN=...
DEMO_TEST=...`` for the quickstart (``--task vlm``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from uec_lab.demo.build import (
    SPECIAL_TOKENS,
    DemoArtifacts,
    _log,
    build_cached,
    build_tokenizer,
    cache_root,
    run_cli,
    supervised_warm_start,
)
from uec_lab.demo.ladder import Ladder, LadderContract
from uec_recipe.cpu.vlm_runtime import IMAGE_PAD, MERGE_SIZE, PATCH_SIZE, VIDEO_PAD, register_image_only_processor

# Geometry3K's hub id: what data_prep's geo3k converter writes as data_source and uec_recipe/reward/ grades with
# mathruler. The converter names, as data_prep.prepare knows them:
GEO3K_TRAIN, GEO3K_TEST = "geo3k_train", "geo3k_test"
# Phrasings of the question: Geometry3K's questions differ in wording, and so in length.
QUESTIONS = (
    "How many squares are in the image?",
    "Count the squares. How many are there?",
    "How many black squares can you see?",
    "What is the number of squares in the picture?",
    "How many squares does the image show?",
)
MAX_RESPONSE_TOKENS = 40  # the longest warm-start response (twelve squares counted) is 35 tokens with eos

# Qwen2.5-VL's vision tokens. The box and object-reference tokens are left out: no processor path uses them.
VISION_START, VISION_END, VISION_PAD = "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"
VISION_TOKENS = [VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD]

# Qwen2.5-VL's chat template, written for this tokenizer: a default system turn, ChatML turns, and each image (or
# video) item of a message rendered as <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to
# one <|image_pad|> per merged 2x2 patch group.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'video' or 'video' in item %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif 'text' in item %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class VlmSettings:
    """Every setting that changes what gets built (the cache key is a hash of these)."""

    build_version: int = 3  # bumped when the task or the build changes in a way no other setting shows
    seed: int = 11
    image_size: int = 56  # 4x4 patches of 14 pixels -> 4 merged image tokens
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112  # a larger image is scaled down to at most 16 image tokens
    max_count: int = 12  # counts past what the warm start teaches make the hard band exist on every CPU
    vocab_size: int = 400  # demo/build.py's BPE size
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    mrope_section: tuple = (2, 3, 3)  # temporal, height, width halves of the 16-dim heads (7B: 16, 24, 24 of 128)
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_heads: int = 2
    warm_start_steps: int = 450
    warm_start_batch: int = 32
    warm_start_lr: float = 3e-3
    warm_start_warmup: int = 50
    full_weight_counts: int = 3  # counts up to this have weight 1; each further square halves the weight
    ladder_prompts_per_count: int = 24  # fresh pictures per count to measure the ladder on
    ladder_samples: int = 4  # samples per picture at T = 1 (and one greedy answer)
    train_prompts: int = 512  # over the task's counts (chosen from the measured ladder)
    test_prompts_per_count: int = 8
    # counting is learnt in a steep curve, so the medium band may hold a single count on some machines
    contract: LadderContract = LadderContract(min_medium=1)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class VlmArtifacts(DemoArtifacts):
    """Where the VLM demo lives: the text demo's layout, with the data named as data_prep names Geometry3K."""

    @property
    def train_file(self) -> Path:
        return self.root / "data" / f"{GEO3K_TRAIN}.parquet"

    @property
    def test_file(self) -> Path:
        return self.root / "data" / f"{GEO3K_TEST}.parquet"

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"


# ---- the task ------------------------------------------------------------------------------------------------


def draw_squares(count: int, rng: random.Random, size: int = 56):
    """A white picture with ``count`` black squares, each inside its own 14x14 patch cell (side 9-12 pixels, at a
    random place in the cell). Black and large: with coloured 6-10 pixel squares and a bare boxed answer, 400
    warm-start steps learnt no counting at all (the answer stayed at the count prior); with these they did."""
    from PIL import Image, ImageDraw

    cells_per_side = size // PATCH_SIZE
    if not 1 <= count <= cells_per_side**2:
        raise ValueError(f"count must be 1..{cells_per_side**2} for a {size}x{size} image, got {count}")
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for cell in rng.sample(range(cells_per_side**2), count):
        side = rng.randint(9, 12)
        x = (cell % cells_per_side) * PATCH_SIZE + rng.randint(1, PATCH_SIZE - 1 - side)
        y = (cell // cells_per_side) * PATCH_SIZE + rng.randint(1, PATCH_SIZE - 1 - side)
        draw.rectangle([x, y, x + side - 1, y + side - 1], fill=(0, 0, 0))
    return image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def answer_text(count: int) -> str:
    """The warm-start response in the paper's template: the squares counted out loud inside <think>, then the
    count in \\boxed{}. Its length grows with the count, so responses differ in length as real ones do."""
    return "<think>" + " ".join(str(n) for n in range(1, count + 1)) + "</think> \\boxed{" + str(count) + "}"


def count_weights(settings: VlmSettings) -> list[float]:
    """Warm-start weight of counts 1..max_count: min(1, 2^-(count - full_weight_counts))."""
    return [min(1.0, 2.0 ** -(count - settings.full_weight_counts)) for count in range(1, settings.max_count + 1)]


def raw_geometry3k_rows(counts, rng: random.Random, size: int) -> dict[str, list]:
    """Rows in hiyouga/geometry3k's raw layout: images (list of images), problem (with "<image>"), answer."""
    images, problems, answers = [], [], []
    for count in counts:
        images.append([{"bytes": png_bytes(draw_squares(count, rng, size)), "path": None}])
        problems.append("<image>" + rng.choice(QUESTIONS))
        answers.append(str(count))
    return {"images": images, "problem": problems, "answer": answers}


def write_raw_split(rows: dict[str, list], path: Path) -> None:
    """One split as the hub stores it: parquet with the ``images`` column declared as a list of datasets.Image."""
    import datasets

    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))


def convert_with_data_prep(raw_dir: Path, out_dir: Path, log=_log) -> None:
    """Run data_prep's real Geometry3K converters on the raw folder (the ``--local-dir`` path)."""
    from data_prep import prepare

    for name in (GEO3K_TRAIN, GEO3K_TEST):
        # prepare prints its summary line on stdout, which --print-env reserves for the DEMO_* lines.
        with contextlib.redirect_stdout(sys.stderr):
            code = prepare.main([name, "--out", str(out_dir), "--local-dir", str(raw_dir), "--quiet", "--overwrite"])
        if code != 0:
            raise RuntimeError(f"data_prep.prepare {name} --local-dir {raw_dir} failed with exit code {code}")
    log(f"[vlm] converted the raw Geometry3K-layout rows with data_prep ({GEO3K_TRAIN}, {GEO3K_TEST})")


def user_messages(content: str, images: list) -> list[dict]:
    """A converted prompt's user message as verl's RLHFDataset hands it to the processor: the text split at each
    "<image>" placeholder, each placeholder replaced by the next image."""
    items, pending = [], list(images)
    for index, segment in enumerate(content.split("<image>")):
        if index > 0:
            items.append({"type": "image", "image": pending.pop(0)})
        if segment:
            items.append({"type": "text", "text": segment})
    if pending:
        raise ValueError(f"{len(pending)} image(s) without an <image> placeholder")
    return [{"role": "user", "content": items}]


def converted_prompt_text(question: str) -> str:
    """The user message data_prep's geo3k converter writes for a question (placeholder, question, suffix)."""
    from data_prep.sources import Problem, build_prompt

    return build_prompt(Problem(question="<image>" + question, ground_truth="1", images=[b""]))[0]["content"]


# ---- tokenizer, processor and model ------------------------------------------------------------------------------


def build_vl_tokenizer(settings: VlmSettings = VlmSettings()):
    """demo/build.py's tokenizer plus Qwen-VL's vision tokens (special, as in Qwen2.5-VL) and its chat template."""
    tokenizer = build_tokenizer(None, settings.vocab_size, settings.seed)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": SPECIAL_TOKENS[1:] + VISION_TOKENS}, replace_extra_special_tokens=True
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, settings: VlmSettings = VlmSettings()):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    processor_class = register_image_only_processor()
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_random_vlm(tokenizer, settings: VlmSettings = VlmSettings()):
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(settings.seed)
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": settings.hidden_size,
            "intermediate_size": settings.intermediate_size,
            "num_hidden_layers": settings.num_layers,
            "num_attention_heads": settings.num_heads,
            "num_key_value_heads": settings.num_kv_heads,
            "max_position_embeddings": 1024,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": list(settings.mrope_section),
            },
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": settings.vision_depth,
            "hidden_size": settings.vision_hidden_size,
            "intermediate_size": settings.vision_intermediate_size,
            "num_heads": settings.vision_heads,
            "out_hidden_size": settings.hidden_size,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [settings.vision_depth - 1],
        },
        image_token_id=token(IMAGE_PAD),
        video_token_id=token(VIDEO_PAD),
        vision_start_token_id=token(VISION_START),
        vision_end_token_id=token(VISION_END),
        tie_word_embeddings=False,  # as in Qwen2.5-VL-7B
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def save_model_dir(model, processor, out_dir: Path) -> None:
    """Save model, tokenizer and processor; the processor files name no processor class (see module docstring),
    so ``AutoProcessor`` picks the registered image-only processor for this config."""
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    for path in out_dir.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "processor_class" in data:
            del data["processor_class"]
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---- warm start --------------------------------------------------------------------------------------------------


class PromptEncoder:
    """Token ids of each phrasing's converted prompt, rendered once through the processor as verl's rollout
    renders it, and the pixel inputs of a batch of pictures."""

    def __init__(self, processor, size: int):
        from PIL import Image

        self.processor = processor
        self.tokenizer = processor.tokenizer
        blank = Image.new("RGB", (size, size), (255, 255, 255))
        self.prompts = []
        for question in QUESTIONS:
            messages = user_messages(converted_prompt_text(question), [blank])
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            self.prompts.append(processor(text=[text], images=[blank], return_tensors="pt")["input_ids"][0].tolist())
        self.image_token_id = processor.image_token_id

    def batch(self, prompts: list[list[int]], answers: list[list[int]] | None = None):
        """Right-padded input ids, attention mask, token types and (with answers) labels on the answers only."""
        import torch

        answers = answers or [[] for _ in prompts]
        rows = [prompt + answer for prompt, answer in zip(prompts, answers)]
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (prompt, ids) in enumerate(zip(prompts, rows)):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            labels[row, len(prompt) : len(ids)] = torch.tensor(ids[len(prompt) :])
        token_types = (input_ids == self.image_token_id).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": token_types}, labels

    def pixels(self, images) -> dict:
        out = self.processor.image_processor(images=images, return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def answer_ids(self, count: int) -> list[int]:
        return self.tokenizer(answer_text(count), add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]


def warm_start(model, encoder: PromptEncoder, settings: VlmSettings, log=_log) -> dict:
    """Supervised warm start on fresh pictures, loss on the answer (the loop is the text demo's)."""
    rng = random.Random(settings.seed + 1)
    counts = list(range(1, settings.max_count + 1))
    weights = count_weights(settings)

    def next_batch(_step):
        batch_counts = rng.choices(counts, weights, k=settings.warm_start_batch)
        images = [draw_squares(count, rng, settings.image_size) for count in batch_counts]
        prompts = [rng.choice(encoder.prompts) for _ in batch_counts]
        inputs, labels = encoder.batch(prompts, [encoder.answer_ids(count) for count in batch_counts])
        return {**inputs, "labels": labels, **encoder.pixels(images)}

    return supervised_warm_start(model, settings, next_batch, log)


def measure_ladder(model, encoder: PromptEncoder, settings: VlmSettings, seed: int = 99) -> Ladder:
    """Greedy and sampled (T = 1, top_p = 1) accuracy of every count on fresh pictures, graded by the Geometry3K
    grader of uec_recipe/reward/, sorted into the bands of ``settings.contract``."""
    import torch

    from uec_recipe.reward import compute_score

    rng = random.Random(seed)
    torch.manual_seed(seed)
    data_source = _geo3k_data_source()
    tokenizer = encoder.tokenizer
    greedy, sampled, successes = {}, {}, {}

    def correct(images, prompt, count, do_sample):
        input_ids = torch.tensor([prompt] * len(images))
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                mm_token_type_ids=(input_ids == encoder.image_token_id).long(),
                **encoder.pixels(images),
                max_new_tokens=MAX_RESPONSE_TOKENS,
                do_sample=do_sample,
                temperature=1.0 if do_sample else None,
                top_k=0 if do_sample else None,
                top_p=1.0,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=False)
        return sum(compute_score(data_source, text, str(count))["acc"] for text in texts)

    for count in range(1, settings.max_count + 1):
        pictures = [draw_squares(count, rng, settings.image_size) for _ in range(settings.ladder_prompts_per_count)]
        prompt = encoder.prompts[count % len(encoder.prompts)]
        greedy[count] = correct(pictures, prompt, count, False) / len(pictures)
        repeated = [picture for picture in pictures for _ in range(settings.ladder_samples)]
        successes[count] = int(correct(repeated, prompt, count, True))
        sampled[count] = successes[count] / len(repeated)
    per_count = settings.ladder_prompts_per_count * settings.ladder_samples
    return Ladder(settings.contract, greedy, sampled, successes, per_count)


def _geo3k_data_source() -> str:
    from data_prep.sources import DATASETS

    return DATASETS[GEO3K_TRAIN].source_id


# ---- build with cache --------------------------------------------------------------------------------------------


def build_vlm_demo(settings: VlmSettings = VlmSettings(), root: Path | None = None, log=_log) -> VlmArtifacts:
    """Build (or reuse from the cache) the tiny VLM and the Geometry3K-format data; returns where they are."""
    import torch

    artifacts = VlmArtifacts(Path(root) if root is not None else cache_root() / f"vlm-{settings.key()}")

    def build_into(staging: Path) -> None:
        # One thread: these matrices are too small to gain from more, and on a shared 2-core machine a second
        # thread that waits for a busy core made a warm-start step up to 10x slower (measured).
        torch.set_num_threads(1)
        started = time.time()
        tokenizer = build_vl_tokenizer(settings)
        processor = build_processor(tokenizer, settings)
        model = build_random_vlm(tokenizer, settings)
        n_params = sum(p.numel() for p in model.parameters())
        n_vision = sum(p.numel() for p in model.model.visual.parameters())
        log(
            f"[vlm] policy: Qwen2.5-VL architecture, {n_params / 1e6:.2f}M parameters "
            f"({n_vision / 1e6:.2f}M vision tower), vocab {len(tokenizer)}"
        )
        encoder = PromptEncoder(processor, settings.image_size)
        lengths = sorted(len(prompt) for prompt in encoder.prompts)
        log(f"[vlm] prompts: {lengths[0]}-{lengths[-1]} tokens incl. 4 image tokens")
        report = warm_start(model, encoder, settings, log=log)
        log(f"[vlm] warm start done in {report['seconds']}s, final loss {report['final_loss']:.4f}")
        log("[vlm] measuring the difficulty ladder (greedy and T = 1 accuracy of every count)")
        ladder = measure_ladder(model, encoder, settings)
        log(f"[vlm] ladder: {ladder.describe()}")
        ladder.check()  # a ladder without its bands fails the build here, before anything is cached
        report["ladder"] = {**ladder.to_json(), "unit": "count"}
        report["parameters"] = n_params
        report["vision_parameters"] = n_vision
        report["prompt_tokens"] = [len(prompt) for prompt in encoder.prompts]
        report["response_tokens"] = [len(encoder.answer_ids(count)) for count in range(1, settings.max_count + 1)]
        report["settings"] = asdict(settings)
        save_model_dir(model, processor, staging / "model")

        rng = random.Random(settings.seed + 2)
        task_counts = ladder.task_levels()
        train_counts = [task_counts[i % len(task_counts)] for i in range(settings.train_prompts)]
        test_counts = [c for c in task_counts for _ in range(settings.test_prompts_per_count)]
        raw = staging / "raw" / "data"
        for split, counts in (("train", train_counts), ("test", test_counts)):
            rows = raw_geometry3k_rows(counts, rng, settings.image_size)
            write_raw_split(rows, raw / f"{split}-00000-of-00001.parquet")
        convert_with_data_prep(staging / "raw", staging / "data", log=log)
        report["build_seconds"] = round(time.time() - started, 1)
        (staging / "warm_start.json").write_text(json.dumps(report, indent=2))

    build_cached(artifacts, "vlm", build_into, log)
    ladder = artifacts.ladder()
    log(f"[vlm] task counts {ladder.describe_task(prefix='')} (cached in {artifacts.root})")
    return artifacts


def main(argv=None) -> int:
    return run_cli(__doc__.splitlines()[0], build_vlm_demo, argv)


if __name__ == "__main__":
    sys.exit(main())
