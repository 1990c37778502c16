"""The rollout server's request log (uec_recipe/rollout/server_log.py): the wrapper records what
``vLLMHttpServer.generate`` is given, passes the call through, and is absent without ``UEC_SERVER_LOG``.

vLLM is not installed here, so the wrapper is applied to a stand-in module whose ``vLLMHttpServer.generate`` has
verl 0.9.1's signature; a test reads verl's own source (without importing it) to hold the two signatures equal.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import verl
from PIL import Image

from uec_recipe.rollout import server_log

REPO = Path(__file__).resolve().parents[2]
SERVER_MODULE = "verl.workers.rollout.vllm_rollout.vllm_async_server"
VERL_SERVER_SOURCE = Path(verl.__file__).parent / "workers" / "rollout" / "vllm_rollout" / "vllm_async_server.py"

# The stand-in server, in a string so that the fresh-interpreter test defines the very same class. Its generate
# has verl 0.9.1's signature (test_the_stand_in_has_verls_signature) and, like verl's, pops max_tokens and
# logprobs out of the sampling parameters it is given.
STAND_IN_SOURCE = """
from typing import Any, Optional


class vLLMHttpServer:
    def __init__(self):
        self.global_steps = 3
        self.replica_rank = 0
        self.calls = []

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
        kv_transfer_params: Optional[dict] = None,
    ):
        sampling_params.pop("max_tokens", None)
        sampling_params.pop("logprobs", None)
        self.calls.append((request_id, dict(sampling_params), image_data))
        return {"token_ids": [1, 2], "request_id": request_id}
"""


def stand_in_module() -> types.ModuleType:
    module = types.ModuleType(SERVER_MODULE)
    exec(STAND_IN_SOURCE, module.__dict__)
    return module


def verl_generate_parameters() -> list[tuple[str, str | None]]:
    """(name, default source) of verl 0.9.1's vLLMHttpServer.generate, read from the file's text."""
    tree = ast.parse(VERL_SERVER_SOURCE.read_text())
    server = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "vLLMHttpServer")
    generate = next(n for n in server.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "generate")
    args = generate.args
    assert not (args.vararg or args.kwarg or args.kwonlyargs), "verl's generate changed its kind of parameters"
    defaults = [None] * (len(args.args) - len(args.defaults)) + [ast.unparse(d) for d in args.defaults]
    return [(arg.arg, default) for arg, default in zip(args.args, defaults)]


def test_the_stand_in_has_verls_signature():
    try:
        from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer  # noqa: F401

        real = [
            (p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in inspect.signature(vLLMHttpServer.generate).parameters.values()
        ]
    except Exception:  # no vLLM here (verl raises ImportError or ValueError): read verl's source instead
        real = verl_generate_parameters()
    stand_in = [
        (p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
        for p in inspect.signature(stand_in_module().vLLMHttpServer.generate).parameters.values()
    ]
    assert stand_in == real


def run(coroutine):
    return asyncio.run(coroutine)


def read_log(folder: Path) -> list[dict]:
    files = sorted(folder.glob("server-*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def test_install_records_what_generate_is_given_and_passes_the_call_through(tmp_path, monkeypatch):
    monkeypatch.setenv(server_log.SERVER_LOG_ENV, str(tmp_path / "server"))
    module = stand_in_module()
    assert server_log.install(module) is True
    server = module.vLLMHttpServer()
    picture = Image.new("RGB", (56, 56), (255, 255, 255))
    params = {"temperature": 1.2, "top_p": 0.99, "top_k": -1, "max_tokens": 16, "logprobs": True}
    out = run(
        server.generate(
            [5, 6, 7],
            params,
            "req-1",
            image_data=[picture],
            mm_processor_kwargs={"min_pixels": 3136, "max_pixels": 12544},
        )
    )
    # keyword call, as verl's server manager makes it, with no images
    run(server.generate(prompt_ids=[5, 6, 7], sampling_params={"temperature": 0.5, "top_p": 1.0}, request_id="req-2"))
    assert out == {"token_ids": [1, 2], "request_id": "req-1"}
    assert [call[0] for call in server.calls] == ["req-1", "req-2"]

    first, second = read_log(tmp_path / "server")
    assert first["request_id"] == "req-1" and first["temperature"] == 1.2 and first["top_p"] == 0.99
    assert first["top_k"] == -1 and first["n"] == 1
    # recorded before verl's generate pops them
    assert first["sampling_params"]["max_tokens"] == 16 and first["sampling_params"]["logprobs"] is True
    assert first["images"] == 1 and first["image_digest"] is not None
    assert first["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12544}
    assert first["global_steps"] == 3 and first["pid"] == os.getpid() and first["prompt_tokens"] == 3
    assert second["request_id"] == "req-2" and second["temperature"] == 0.5
    assert second["images"] == 0 and second["image_digest"] is None and second["mm_processor_kwargs"] is None
    assert first["prompt_digest"] == second["prompt_digest"]  # the same prompt ids


def test_digests_tell_prompts_and_pictures_apart(tmp_path, monkeypatch):
    monkeypatch.setenv(server_log.SERVER_LOG_ENV, str(tmp_path))
    module = stand_in_module()
    server_log.install(module)
    server = module.vLLMHttpServer()
    white, black = Image.new("RGB", (8, 8), (255,) * 3), Image.new("RGB", (8, 8), (0,) * 3)
    for ids, image in (([1, 2], white), ([1, 2], white.copy()), ([1, 2], black), ([1, 3], white)):
        run(server.generate(ids, {"temperature": 1.0}, "r", image_data=[image]))
    records = read_log(tmp_path)
    assert records[0]["image_digest"] == records[1]["image_digest"] != records[2]["image_digest"]
    assert records[0]["prompt_digest"] == records[2]["prompt_digest"] != records[3]["prompt_digest"]


def test_without_the_variable_nothing_is_wrapped(tmp_path, monkeypatch):
    monkeypatch.delenv(server_log.SERVER_LOG_ENV, raising=False)
    module = stand_in_module()
    original = module.vLLMHttpServer.generate
    assert server_log.install(module) is False
    assert module.vLLMHttpServer.generate is original


def test_installing_twice_wraps_once(tmp_path, monkeypatch):
    monkeypatch.setenv(server_log.SERVER_LOG_ENV, str(tmp_path))
    module = stand_in_module()
    server_log.install(module)
    wrapped = module.vLLMHttpServer.generate
    server_log.install(module)
    assert module.vLLMHttpServer.generate is wrapped
    assert inspect.iscoroutinefunction(wrapped)  # Ray keeps the actor asynchronous
    # Ray reads the method's signature: the wrapper shows verl's
    assert list(inspect.signature(wrapped).parameters) == [name for name, _ in verl_generate_parameters()]
    run(module.vLLMHttpServer().generate([1], {"temperature": 1.0}, "once"))
    assert len(read_log(tmp_path)) == 1


def test_the_cpu_backends_server_is_wrapped_the_same_way(tmp_path, monkeypatch):
    """The CPU rollout's HFGenerationServer takes generate's arguments (extra ones in **kwargs): the record is
    written before its own code runs (here it refuses video at once, before touching a model)."""
    from uec_recipe.cpu import hf_rollout

    monkeypatch.setenv(server_log.SERVER_LOG_ENV, str(tmp_path))
    original = hf_rollout.HFGenerationServer.generate
    monkeypatch.setattr(hf_rollout.HFGenerationServer, "generate", original)  # undone after the test
    assert server_log.install(hf_rollout, "HFGenerationServer") is True
    server = object.__new__(hf_rollout.HFGenerationServer)
    server.global_steps, server.replica_rank = 2, 1
    with pytest.raises(ValueError, match="video"):
        run(server.generate([4, 5], {"temperature": 1.2}, "cpu", video_data=[b"v"], mm_processor_kwargs={"a": 1}))
    (record,) = read_log(tmp_path)
    assert (record["request_id"], record["temperature"], record["videos"]) == ("cpu", 1.2, 1)
    assert record["mm_processor_kwargs"] == {"a": 1} and record["global_steps"] == 2


def test_an_unwritable_folder_fails_with_the_variable_named(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(server_log.SERVER_LOG_ENV, str(blocker / "server"))
    module = stand_in_module()
    server_log.install(module)
    with pytest.raises(OSError, match="UEC_SERVER_LOG=.*unset UEC_SERVER_LOG"):
        run(module.vLLMHttpServer().generate([1], {"temperature": 1.0}, "r"))


# ---- through the plugin, in a fresh interpreter ---------------------------------------------------------------

PLUGIN_REGISTERS = "server_log" in (REPO / "uec_recipe" / "plugin.py").read_text()

# The child serves the stand-in under verl's module name (and an empty parent package, whose real __init__ needs
# vLLM) from a finder placed before the path finder, then imports verl, which loads the plugin as in every Ray
# process, and finally the server module: the plugin's after-import hook must wrap it.
CHILD = textwrap.dedent(
    """
    import asyncio, importlib.abc, importlib.machinery, importlib.util, json, sys

    NAME = "verl.workers.rollout.vllm_rollout.vllm_async_server"
    PARENT = NAME.rpartition(".")[0]
    SOURCE = {source!r}

    class StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname == PARENT:
                return importlib.util.spec_from_loader(fullname, self, is_package=True)
            if fullname == NAME:
                return importlib.util.spec_from_loader(fullname, self)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            if module.__name__ == NAME:
                exec(SOURCE, module.__dict__)

    position = next(i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder)
    sys.meta_path.insert(position, StandIn())
    import verl  # noqa: F401  (loads the verl.plugins entry points: uec_recipe.plugin)
    import importlib
    module = importlib.import_module(NAME)
    server = module.vLLMHttpServer()
    asyncio.run(server.generate([1, 2], {{"temperature": 1.2, "top_p": 0.99}}, "child"))
    print(json.dumps({{"plugin": "uec_recipe.plugin" in sys.modules,
                      "wrapped": hasattr(module.vLLMHttpServer.generate, "_uec_server_log")}}))
    """
)


def run_child(tmp_path: Path, log_folder: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != server_log.SERVER_LOG_ENV}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if log_folder is not None:
        env[server_log.SERVER_LOG_ENV] = str(log_folder)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(source=STAND_IN_SOURCE))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not PLUGIN_REGISTERS,
    reason="uec_recipe/plugin.py does not register uec_recipe.rollout.server_log.install yet (after_import of "
    "verl.workers.rollout.vllm_rollout.vllm_async_server when UEC_SERVER_LOG is set)",
)
def test_the_plugin_wraps_the_server_in_a_fresh_interpreter_with_the_variable(tmp_path):
    # without the variable the plugin does not even attach the hook: tests/test_plugin.py
    # (test_a_missing_server_log_module_only_warns_and_without_the_variable_nothing_is_installed)
    folder = tmp_path / "server"
    with_log = run_child(tmp_path, folder)
    assert with_log == {"plugin": True, "wrapped": True}
    (record,) = read_log(folder)
    assert record["request_id"] == "child" and record["temperature"] == 1.2 and record["top_p"] == 0.99
