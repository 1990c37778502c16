"""Rollout ``hf``: a transformers-``generate`` server that stands in for vLLM when there is no GPU.

It plugs into verl 0.9.1 at the same three places as vLLM does (see docs/design.md, "CPU backend"):

* ``HFReplica`` (server side, ``RolloutReplicaRegistry``) starts one named Ray actor per replica;
* ``HFGenerationServer`` is that actor: the agent loop sends it token-in/token-out requests, each with its own
  sampling parameters, and the trainer pushes weights to it after each update;
* ``HFServerAdapter`` (worker side, ``_ROLLOUT_REGISTRY[("hf", "async")]``) lives in the trainer's FSDP worker
  and forwards the gathered weights to the server.

Requests that arrive together are generated as one left-padded batch. Every request keeps its own sampling
parameters inside the batch (UEC-RL sends the exploration temperature T' for some prompts and the base
temperature for the rest at the same time): sampling is done by a logits processor that applies each row's
temperature, top-k and top-p, and draws each row's token with the Gumbel-max trick from a random generator
seeded by that request alone. A request therefore gets the same tokens whatever else shares its batch, which
keeps runs reproducible even though the arrival order of concurrent requests is not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Optional

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

# Environment variable naming a JSONL file to which the server appends one line per request (the sampling
# parameters it actually used). Tests and demos read it to prove which temperature reached the rollout.
REQUEST_LOG_ENV = "UEC_ROLLOUT_REQUEST_LOG"
# Diagnostic switch: the server keeps its initial weights and ignores every sync. Used as the negative control
# showing that, normally, the rollout generates with the trainer's updated weights.
FREEZE_WEIGHTS_ENV = "UEC_ROLLOUT_FREEZE_WEIGHTS"
# Requests generated together at most; UEC_ROLLOUT_MAX_BATCH=1 serves one request at a time (bench/rollout_batching.py
# compares the two).
MAX_BATCH_ROWS = int(os.environ.get("UEC_ROLLOUT_MAX_BATCH", "512"))


@dataclass
class _Request:
    prompt_ids: list[int]
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    want_logprobs: bool
    seed: int
    future: asyncio.Future
    images: Optional[list[Any]] = None
    extra: dict = field(default_factory=dict)


class PerRowSampler:
    """Logits processor that samples every row with its own temperature, top-k, top-p and random stream.

    transformers applies one set of sampling parameters to a whole ``generate`` call. Run ``generate`` greedily
    with this processor: for a sampled row it returns processed log-probabilities plus Gumbel noise, whose argmax
    is an exact draw from the processed distribution; greedy rows (temperature 0) are returned unchanged. The
    log-probability of each chosen token under the processed distribution (what vLLM reports with
    ``logprobs_mode=processed_logprobs``) is collected on the way.
    """

    def __init__(self, temperatures, top_ks, top_ps, seeds):
        self.temperatures = torch.tensor(temperatures, dtype=torch.float32)
        self.sampled = self.temperatures > 0
        self.top_ks = list(top_ks)
        self.top_ps = list(top_ps)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.chosen_logprobs: list[torch.Tensor] = []
        self._last_logprobs: Optional[torch.Tensor] = None

    def _process(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        temps = torch.where(self.sampled, self.temperatures, torch.ones_like(self.temperatures))
        scores = scores / temps[:, None]
        vocab = scores.shape[-1]
        for row, (k, p) in enumerate(zip(self.top_ks, self.top_ps)):
            if not self.sampled[row]:
                continue
            if 0 < k < vocab:
                kth = torch.topk(scores[row], k).values[-1]
                scores[row] = scores[row].masked_fill(scores[row] < kth, float("-inf"))
            if p < 1.0:
                sorted_scores, order = torch.sort(scores[row], descending=True)
                cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(-1)
                # drop a token when the mass before it already reaches top_p (the first token always stays)
                drop_sorted = (cumulative - torch.softmax(sorted_scores, dim=-1)) >= p
                drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
                scores[row] = scores[row].masked_fill(drop, float("-inf"))
        return torch.log_softmax(scores, dim=-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last_logprobs is not None:
            self.chosen_logprobs.append(self._last_logprobs.gather(1, input_ids[:, -1:]).squeeze(1))
        logprobs = self._process(scores)
        self._last_logprobs = logprobs
        noise = torch.zeros_like(logprobs)
        for row in range(logprobs.shape[0]):
            if self.sampled[row]:
                uniform = torch.rand(logprobs.shape[-1], generator=self.generators[row]).clamp_(1e-20, 1.0)
                noise[row] = -torch.log(-torch.log(uniform))
        return torch.where(self.sampled[:, None], logprobs + noise, scores.float())

    def finish(self, sequences: torch.LongTensor) -> torch.Tensor:
        """Log-probs of all generated tokens, shape (rows, generated length)."""
        if self._last_logprobs is not None:
            self.chosen_logprobs.append(self._last_logprobs.gather(1, sequences[:, -1:]).squeeze(1))
            self._last_logprobs = None
        return torch.stack(self.chosen_logprobs, dim=1) if self.chosen_logprobs else torch.zeros(len(sequences), 0)


def request_seed(base_seed: int, weight_version, prompt_ids: list[int], params: tuple, occurrence: int) -> int:
    """A request's random seed: fixed by what is asked, not by when it arrives (see module docstring)."""
    digest = hashlib.sha256(repr((base_seed, weight_version, tuple(prompt_ids), params, occurrence)).encode())
    return int.from_bytes(digest.digest()[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def weights_checksum(model) -> float:
    """A cheap fingerprint of the weights, logged on every sync so a run can show the rollout saw new weights."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.parameters()))


class HFGenerationServer:
    """Ray actor serving token-in/token-out generation with transformers on CPU."""

    def __init__(self, config, model_config, replica_rank: int = 0):
        from transformers import AutoTokenizer

        self.config = config
        self.model_config = model_config
        self.replica_rank = replica_rank
        self.global_steps = None
        self.base_seed = int(getattr(config, "seed", 0) or 0) + replica_rank
        self.prompt_length = int(config.prompt_length)
        self.response_length = int(config.response_length)
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))

        # verl hands replicas the raw model config (a DictConfig with `path`), workers the dataclass (`local_path`).
        self.model_path = getattr(model_config, "local_path", None) or model_config.path
        self.trust_remote_code = bool(getattr(model_config, "trust_remote_code", False))
        path = self.model_path
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        self.model = self._load_model(path)
        self.eos_token_ids = self._eos_token_ids()
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.eos_token_ids[0]

        self._pending: list[_Request] = []
        self._batcher: Optional[asyncio.Task] = None
        self._occurrences: Counter = Counter()
        self._generate_lock = threading.Lock()
        self.request_log: deque = deque(maxlen=10_000)
        self._request_log_path = os.environ.get(REQUEST_LOG_ENV)
        self.stats = {"requests": 0, "batches": 0, "generated_tokens": 0, "generate_seconds": 0.0}
        self.max_batch_rows = MAX_BATCH_ROWS

    def _load_model(self, path: str):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

        # verl's HFModelConfig imports model.external_lib before it loads the processor; this actor builds no
        # HFModelConfig, so it imports them itself (the CPU VLM demo registers its image-only processor there).
        self._import_external_libs(getattr(self.model_config, "external_lib", None))
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        is_vision_language = getattr(hf_config, "vision_config", None) is not None
        model_cls = AutoModelForImageTextToText if is_vision_language else AutoModelForCausalLM
        model = model_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        self.processor = None
        self.image_token_id = getattr(hf_config, "image_token_id", None)
        self.video_token_id = getattr(hf_config, "video_token_id", None)
        if is_vision_language:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        return model

    @staticmethod
    def _import_external_libs(external_lib) -> None:
        from verl.utils.import_utils import import_external_libs

        if external_lib is not None and not isinstance(external_lib, str):
            external_lib = [str(name) for name in external_lib]  # a ListConfig when it comes from hydra
        import_external_libs(external_lib)

    def _eos_token_ids(self) -> list[int]:
        ids = []
        for candidate in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if candidate is None:
                continue
            ids.extend(candidate if isinstance(candidate, (list, tuple)) else [candidate])
        if not ids:
            raise ValueError(f"model at {self.model_path} defines no eos_token_id; generation would never stop")
        return sorted(set(int(i) for i in ids))

    # ---- generation -------------------------------------------------------------------------------------------

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        **_unused,
    ) -> TokenOutput:
        if video_data:
            raise ValueError("the CPU 'hf' rollout does not support video inputs")
        if image_data and self.processor is None:
            raise ValueError(
                f"request {request_id} carries {len(image_data)} image(s) but the model at "
                f"{self.model_path} is not a vision-language model"
            )
        prompt_ids = [int(t) for t in prompt_ids]
        temperature = float(sampling_params.get("temperature", 1.0))
        top_p = float(sampling_params.get("top_p", 1.0))
        top_k = int(sampling_params.get("top_k", -1) or -1)
        max_tokens = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens"))
        if max_tokens is None:
            max_tokens = min(self.response_length, self.prompt_length + self.response_length - len(prompt_ids))
        max_tokens = max(1, int(max_tokens))
        params = (temperature, top_p, top_k, max_tokens)
        occurrence_key = (tuple(prompt_ids), params, len(image_data or []))
        occurrence = self._occurrences[occurrence_key]
        self._occurrences[occurrence_key] += 1
        request = _Request(
            prompt_ids=prompt_ids,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_tokens=max_tokens,
            want_logprobs=bool(sampling_params.get("logprobs", False)),
            seed=request_seed(self.base_seed, self.global_steps, prompt_ids, params, occurrence),
            future=asyncio.get_running_loop().create_future(),
            images=list(image_data) if image_data else None,
        )
        self._log_request(request_id, request)
        self._pending.append(request)
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches())
        return await request.future

    async def _run_batches(self):
        while self._pending:
            # Yield once so that requests sent together by the agent loop join the same batch.
            await asyncio.sleep(0.005)
            batch, self._pending = self._pending[: self.max_batch_rows], self._pending[self.max_batch_rows :]
            try:
                outputs = await asyncio.to_thread(self._generate_batch, batch)
            except Exception as error:  # surface the failure to every waiting request, then keep serving
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            for request, output in zip(batch, outputs):
                if not request.future.done():
                    request.future.set_result(output)

    def _generate_batch(self, batch: list[_Request]) -> list[TokenOutput]:
        # Text-only requests are batched together, and so are requests with images: their pixel tensors are
        # concatenated in row order, the order in which the model fills the rows' image-pad runs.
        text_rows = [r for r in batch if not r.images]
        outputs: dict[int, TokenOutput] = {}
        if text_rows:
            for request, output in zip(text_rows, self._generate_rows(text_rows)):
                outputs[id(request)] = output
        image_rows = [r for r in batch if r.images]
        if image_rows:
            for request, output in zip(image_rows, self._generate_rows(image_rows)):
                outputs[id(request)] = output
        return [outputs[id(r)] for r in batch]

    @torch.no_grad()
    def _generate_rows(self, rows: list[_Request]) -> list[TokenOutput]:
        from transformers import GenerationConfig, LogitsProcessorList

        started = time.perf_counter()
        width = max(len(r.prompt_ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, request in enumerate(rows):
            input_ids[i, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            attention_mask[i, width - len(request.prompt_ids) :] = 1
        model_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if any(r.images for r in rows):
            model_inputs.update(self._vision_inputs(rows, input_ids))

        sampler = PerRowSampler(
            [r.temperature for r in rows], [r.top_k for r in rows], [r.top_p for r in rows], [r.seed for r in rows]
        )
        max_new_tokens = max(r.max_tokens for r in rows)
        generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        with self._generate_lock:
            sequences = self.model.generate(
                **model_inputs, generation_config=generation_config, logits_processor=LogitsProcessorList([sampler])
            )
        generated = sequences[:, width:]
        logprobs = sampler.finish(sequences)

        outputs = []
        eos = set(self.eos_token_ids)
        for i, request in enumerate(rows):
            tokens = generated[i, : request.max_tokens].tolist()
            for position, token in enumerate(tokens):
                if token in eos:
                    tokens = tokens[: position + 1]
                    break
            row_logprobs = logprobs[i, : len(tokens)].tolist() if request.want_logprobs else None
            outputs.append(
                TokenOutput(
                    token_ids=tokens,
                    log_probs=row_logprobs,
                    stop_reason="completed",
                    num_preempted=0,
                    extra_fields={"global_steps": self.global_steps, "sampling_temperature": request.temperature},
                )
            )
            self.stats["generated_tokens"] += len(tokens)
        self.stats["requests"] += len(rows)
        self.stats["batches"] += 1
        self.stats["generate_seconds"] += time.perf_counter() - started
        return outputs

    def _vision_inputs(self, rows: list[_Request], input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The vision inputs of a batch of requests: the images of all rows, in row order.

        The agent loop has already expanded each image placeholder in prompt_ids (one pad token per merged patch
        group of the resized image it also sends), so only the pixel tensors, their grid sizes and the token types
        are built here.
        """
        images = [image for request in rows for image in (request.images or [])]
        model_inputs = dict(self.processor.image_processor(images=images, return_tensors="pt"))
        grid = model_inputs.get("image_grid_thw")
        if grid is not None and self.image_token_id is not None:
            merge = int(getattr(self.processor.image_processor, "merge_size", 1) or 1)
            expected = int((grid.prod(-1) // (merge * merge)).sum())
            found = int((input_ids == self.image_token_id).sum())
            if expected != found:
                raise ValueError(
                    f"the prompts hold {found} image tokens but their {len(images)} image(s) make {expected}: "
                    "the rollout's image processor must resize as the agent loop's processor did"
                )
        import inspect

        if self.image_token_id is not None and "mm_token_type_ids" in inspect.signature(self.model.forward).parameters:
            # Qwen2.5-VL in transformers >= 5.3 builds M-RoPE positions (3-D for image tokens) only when it gets the
            # token types; without them image tokens would get text positions, unlike the trainer's forward.
            token_types = torch.zeros_like(input_ids)
            token_types[input_ids == self.image_token_id] = 1
            if self.video_token_id is not None:
                token_types[input_ids == self.video_token_id] = 2
            model_inputs["mm_token_type_ids"] = token_types
        return model_inputs

    def _tower_checksums(self) -> Optional[dict[str, float]]:
        """Separate weight fingerprints of the vision tower and the language model (vision-language models only),
        so a run can show that a weight sync changed both."""
        if self.processor is None:
            return None
        sums = {"vision": 0.0, "language": 0.0}
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                tower = "vision" if "visual" in name.split(".") else "language"
                sums[tower] += float(parameter.double().abs().sum())
        return sums

    def _log_request(self, request_id: str, request: _Request) -> None:
        record = {
            "event": "generate",
            "request_id": request_id,
            "global_steps": self.global_steps,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "max_tokens": request.max_tokens,
            "num_images": len(request.images or []),
        }
        self._append_log(record)

    def _append_log(self, record: dict) -> None:
        self.request_log.append(record)
        if self._request_log_path:
            with open(self._request_log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # ---- control plane (the calls verl makes on vLLM servers) ---------------------------------------------------

    def update_weights(self, state_dict: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> int:
        """Load the trainer's weights; returns the number of tensors loaded."""
        if os.environ.get(FREEZE_WEIGHTS_ENV, "0") == "1":
            state_dict = {}
        with self._generate_lock:
            missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
            # Tied embeddings appear once in the trainer's state dict (the output layer is the input embedding);
            # an untied model's lm_head is a weight of its own and must arrive like any other.
            output, embedding = self.model.get_output_embeddings(), self.model.get_input_embeddings()
            tied = output is not None and embedding is not None and output.weight is embedding.weight
            missing = [name for name in missing if not (tied and "lm_head" in name)]
            if state_dict and (missing or unexpected):
                raise RuntimeError(f"weight sync mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
            self.model.eval()
        if global_steps is not None:
            self.global_steps = global_steps
        self._occurrences.clear()
        self._append_log(
            {
                "event": "update_weights",
                "global_steps": self.global_steps,
                "weights_checksum": weights_checksum(self.model),
                "tower_checksums": self._tower_checksums(),
            }
        )
        return len(state_dict)

    def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    def get_request_log(self) -> list[dict]:
        return list(self.request_log)

    def get_stats(self) -> dict:
        return dict(self.stats)

    def ready(self) -> bool:
        return True

    # Memory management is a no-op on CPU: there is no KV cache to free and the weights stay resident.
    async def wake_up(self, tags: Optional[list[str]] = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def wait_for_requests_to_drain(self):
        while self._pending or (self._batcher is not None and not self._batcher.done()):
            await asyncio.sleep(0.01)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False):
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


def server_actor_name(replica_rank: int) -> str:
    return f"hf_server_{replica_rank}_0"


class HFReplica(RolloutReplica):
    """One ``HFGenerationServer`` per replica, started next to the hybrid trainer workers."""

    async def launch_servers(self):
        server_cls = ray.remote(HFGenerationServer)
        server = server_cls.options(
            name=server_actor_name(self.replica_rank),
            num_cpus=1,
            max_concurrency=self.max_concurrency,
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-replica-{self.replica_rank}"


class HFServerAdapter(BaseRollout):
    """Worker-side end of the weight sync: gathers the trainer's (possibly sharded) weights for the server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        if rollout_world_size != 1:
            raise ValueError(
                "the CPU 'hf' rollout serves a whole model per replica: set "
                "actor_rollout_ref.rollout.tensor_model_parallel_size=1 (and data/pipeline parallel size 1)"
            )
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    @torch.no_grad()
    async def update_weights(self, weights, global_steps: int = None, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"the CPU 'hf' rollout receives full tensors only (wire_format={wire_format!r})")
        from torch.distributed.tensor import DTensor

        state_dict = {}

        def add(name, tensor):
            if isinstance(tensor, DTensor):
                tensor = tensor.full_tensor()  # collective: every trainer rank takes part
            state_dict[name] = tensor.detach().to("cpu", copy=True)

        if hasattr(weights, "__aiter__"):
            async for name, tensor in weights:
                add(name, tensor)
        else:
            for name, tensor in weights:
                add(name, tensor)
        await self._server_handle().update_weights.remote(state_dict, global_steps)


# The rollout servers' request log (UEC_SERVER_LOG; nothing is wrapped without it), as the plugin installs it on
# vLLM's server. Installed here rather than through the plugin: in a server actor this module is the first one
# imported, and verl loads the plugin while this module is still executing, before HFGenerationServer exists.
from uec_recipe.rollout import server_log  # noqa: E402

server_log.install(sys.modules[__name__], "HFGenerationServer")
