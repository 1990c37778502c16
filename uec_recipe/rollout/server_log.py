"""Opt-in log of what the vLLM server is asked to generate, written inside the server process.

The agent loop's request log (``UEC_AGENT_REQUEST_LOG``, uec_recipe/rollout/agent_loop.py) records a request before
it leaves the agent loop, so a temperature lost on the way (in verl's server manager or in its vLLM server) would
not show there. With ``UEC_SERVER_LOG=<folder>`` in the environment of the rollout servers, ``install`` wraps verl
0.9.1's ``vLLMHttpServer.generate`` (verl/workers/rollout/vllm_rollout/vllm_async_server.py) so that every request
appends one JSON line to ``<folder>/server-<host>-<pid>.jsonl`` with the arguments the server received, before it
turns them into vLLM's ``SamplingParams``: request id, temperature, top_p, top_k and every other plain sampling
parameter, the step the server's weights belong to, the number of images and a digest of their pixels, a digest of
the prompt token ids, the ``mm_processor_kwargs``, host and pid. The prompt and image digests let a reader group
the samples of one prompt (a group at T, a group at T', a validation sample) without the agent loop's uid, which
the server never sees. One file per server process: no two processes ever append to the same file, on any file
system. The GPU smoke test (``run_scripts/gpu/smoke.sh``, ``uec_lab/smoke/check.py``) reads the folder.

``uec_recipe.plugin`` registers ``install`` for ``verl.workers.rollout.vllm_rollout.vllm_async_server`` when
``UEC_SERVER_LOG`` is set; verl imports the plugin in every Ray process, the vLLM server actors included, so the
wrapper is in place wherever the server runs. Without the variable nothing is wrapped and nothing is written.
``install(module, "HFGenerationServer")`` wraps the CPU backend's server (uec_recipe/cpu/hf_rollout.py), whose
``generate`` takes the same arguments, so the smoke test's checks also run on a CPU training run.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import socket
import time
from typing import Any

SERVER_LOG_ENV = "UEC_SERVER_LOG"
SERVER_CLASS = "vLLMHttpServer"
_WRAPPED = "_uec_server_log"  # set on the wrapper: installing twice wraps once


def _plain(value):
    """A JSON-ready form of a parameter value (numpy scalars arrive as well as plain values)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


def _image_bytes(image) -> bytes:
    """The bytes that identify one image item: its pixels for a PIL image or an array, the item itself for bytes."""
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().contiguous().numpy()
    if hasattr(image, "tobytes") and hasattr(image, "shape"):  # numpy
        return f"{image.dtype}{image.shape}".encode() + image.tobytes()
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    return repr(image).encode()


def digest(parts) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()[:16]


def server_record(arguments: dict[str, Any], server) -> dict[str, Any]:
    """One log line from the bound arguments of ``generate`` and the server object it was called on."""
    sampling_params = dict(arguments.get("sampling_params") or {})
    images = list(arguments.get("image_data") or [])
    prompt_ids = [int(token) for token in (arguments.get("prompt_ids") or [])]
    record = {
        "request_id": _plain(arguments.get("request_id")),
        "temperature": _plain(sampling_params.get("temperature")),
        "top_p": _plain(sampling_params.get("top_p")),
        "top_k": _plain(sampling_params.get("top_k")),
        "n": _plain(sampling_params.get("n", 1)),
        "sampling_params": {str(name): _plain(value) for name, value in sampling_params.items()},
        "global_steps": _plain(getattr(server, "global_steps", None)),
        "replica_rank": _plain(getattr(server, "replica_rank", None)),
        "prompt_tokens": len(prompt_ids),
        "prompt_digest": digest([json.dumps(prompt_ids).encode()]),
        "images": len(images),
        "image_digest": digest([_image_bytes(image) for image in images]) if images else None,
        "videos": len(arguments.get("video_data") or []),
        "mm_processor_kwargs": _plain(arguments.get("mm_processor_kwargs") or None),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": round(time.time(), 3),
    }
    return record


def log_path(folder: str) -> str:
    return os.path.join(folder, f"server-{socket.gethostname()}-{os.getpid()}.jsonl")


def append_server_log(folder: str, record: dict[str, Any]) -> None:
    """Append one JSON line to this process's file in ``folder`` (a single ``write`` to an O_APPEND file)."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    path = log_path(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise OSError(
            f"{SERVER_LOG_ENV}={folder}: cannot append the rollout server's request log {path} ({error.strerror}); "
            f"make the folder writable on every node or unset {SERVER_LOG_ENV}"
        ) from error
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def install(module, class_name: str = SERVER_CLASS) -> bool:
    """Wrap ``module.<class_name>.generate`` (verl 0.9.1's ``vLLMHttpServer`` by default) to log each request into
    ``$UEC_SERVER_LOG``; returns whether the wrapper is in place. Without the variable nothing is wrapped."""
    folder = os.environ.get(SERVER_LOG_ENV)
    if not folder:
        return False
    server_class = getattr(module, class_name, None)
    if server_class is None:
        raise AttributeError(f"{module.__name__} has no {class_name}: this verl is not 0.9.1's layout")
    original = server_class.generate
    if getattr(original, _WRAPPED, None) is not None:
        return True
    if not inspect.iscoroutinefunction(original):
        raise TypeError(f"{class_name}.generate is not a coroutine function; the server log expects verl 0.9.1's")
    signature = inspect.signature(original)
    # a server that takes further keyword arguments in **kwargs (the CPU one) has them recorded as named ones
    var_keyword = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    folder = os.path.abspath(folder)

    # functools.wraps keeps the name and, through __wrapped__, the signature Ray reads when it makes the actor
    # method; an ``async def`` wrapper keeps the actor asynchronous, as vLLMHttpServer is.
    @functools.wraps(original)
    async def generate(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for name in var_keyword:
            arguments.update(arguments.pop(name, None) or {})
        # recorded before the call: generate pops max_tokens and logprobs out of the dict it is given
        append_server_log(folder, server_record(arguments, self))
        return await original(self, *args, **kwargs)

    setattr(generate, _WRAPPED, folder)
    server_class.generate = generate
    return True
