"""Every GPU script composes under DRY_RUN=1 with the settings that define its experiment (no Ray, GPU or weights).

A refactor that silently changes a paper setting, a preset, a data file, an engine setting taken from verl's
examples, the logger or what reaches the Ray workers makes one of these fail. The one-GPU smoke script is checked by
composition too, and a real launch without the GPU packages stops at its pre-flight checks.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from uec_recipe.main_uec import dry_run_config

REPO = Path(__file__).resolve().parents[1]
METHODS = ["uec", "uec_plus", "uec_release", "uec_same_temp", "grpo", "dapo", "kl_cov", "entropy_adv"]
# variables the scripts forward to the Ray workers: cleared from the test's environment unless a test sets them
FORWARDED_UNLESS_GIVEN = [
    "VERL_FILE_LOGGER_PATH",
    "TENSORBOARD_DIR",
    "UEC_AGENT_REQUEST_LOG",
    "UEC_SERVER_LOG",
    "WANDB_MODE",
    "LOGGER",
]
# knobs of the launcher: cleared too, so that the machine running the tests cannot change what is composed
KNOBS = ["NNODES", "GPUS_PER_NODE", "TP", "PROJECT", "TOTAL_EPOCHS", "SAVE_FREQ", "TEST_FREQ", "MAX_CKPT_TO_KEEP"]
KNOBS += ["MODEL_PATH", "EXPERIMENT", "CKPT_DIR", "ATTN", "ROLLOUT", "RAY_ADDRESS", "PRINT_COMMAND"]


def script_env(env_extra: dict, **fixed) -> dict:
    env = {**os.environ, "PYTHON": sys.executable, "DATA_DIR": "/data/uec", **fixed, **env_extra}
    for name in FORWARDED_UNLESS_GIVEN + KNOBS:
        if name not in env_extra and name not in fixed:
            env.pop(name, None)
    return env


def run_script(script: str, overrides, env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "run_scripts/gpu" / script), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def compose(script: str, *overrides: str, cwd=None, **env_extra) -> tuple[list[dict], str]:
    """The configurations a GPU script composes, and its stderr: the script prints the command lines it would run
    (DRY_RUN=1 PRINT_COMMAND=1, no python started) and each is composed and checked in this process, as
    ``python -m uec_recipe.main_uec`` does under UEC_DRY_RUN=1."""
    result = run_script(script, overrides, script_env(env_extra, DRY_RUN="1", PRINT_COMMAND="1"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]
    assert commands and all(c[:3] == [sys.executable, "-m", "uec_recipe.main_uec"] for c in commands), commands
    configs = [OmegaConf.to_container(dry_run_config(c[3:]), resolve=True) for c in commands]
    return configs, result.stderr


def dry_run(script: str, *overrides: str, **env_extra) -> dict:
    configs, _ = compose(script, *overrides, **env_extra)
    assert len(configs) == 1
    return configs[0]


def refused(script: str, *overrides: str, dry: bool = True, **env_extra) -> str:
    """Run a GPU script that must stop before any expensive work; its stderr."""
    env = script_env(env_extra)
    if dry:
        env["DRY_RUN"] = "1"
    else:
        env.pop("DRY_RUN", None)
    result = run_script(script, overrides, env)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "resolved configuration" not in result.stdout
    return result.stderr


def runtime_env_vars(config: dict) -> dict:
    return config["ray_kwargs"]["ray_init"]["runtime_env"].get("env_vars", {})


def check_paper_settings(config: dict) -> None:
    arr = config["actor_rollout_ref"]
    assert config["data"]["train_batch_size"] == 512 and arr["rollout"]["n"] == 5
    assert (arr["rollout"]["temperature"], arr["rollout"]["top_p"]) == (1.0, 0.99)
    assert (config["data"]["max_prompt_length"], config["data"]["max_response_length"]) == (2048, 2048)
    assert arr["actor"]["optim"]["lr"] == 1e-6 and arr["actor"]["ppo_mini_batch_size"] == 128
    assert arr["actor"]["ppo_epochs"] == 1
    assert (arr["rollout"]["val_kwargs"]["temperature"], arr["rollout"]["val_kwargs"]["n"]) == (0.5, 1)
    assert arr["rollout"]["name"] == "vllm" and arr["rollout"]["tensor_model_parallel_size"] == 2
    assert config["trainer"]["n_gpus_per_node"] == 8 and config["trainer"]["nnodes"] == 1


def check_engine_settings(config: dict) -> None:
    """verl's GPU-example memory settings every run shares, flash-attention by default, the packaged reward."""
    arr = config["actor_rollout_ref"]
    assert arr["rollout"]["gpu_memory_utilization"] == 0.6
    assert arr["model"]["use_remove_padding"] is True and "attn_implementation" not in arr["model"]["override_config"]
    assert arr["model"]["enable_gradient_checkpointing"] is True
    assert arr["actor"]["use_dynamic_bsz"] is True and arr["actor"]["ppo_max_token_len_per_gpu"] == 24576
    assert arr["ref"]["fsdp_config"]["param_offload"] is True
    reward_function = config["reward"]["custom_reward_function"]
    assert (reward_function["path"], reward_function["name"]) == ("pkg://uec_recipe.reward", "compute_score")
    # console + verl's file logger into the run's folder (trainer.default_local_dir): no account needed
    assert config["trainer"]["logger"] == ["console", "file"]
    run_dir = config["trainer"]["default_local_dir"]
    assert runtime_env_vars(config) == {"VERL_FILE_LOGGER_PATH": f"{run_dir}/metrics.jsonl"}


def check_method(config: dict, method: str) -> None:
    actor, algorithm, uec = config["actor_rollout_ref"]["actor"], config["algorithm"], config["uec"]
    assert uec["enable"] is method.startswith("uec")
    if method.startswith("uec"):
        # the reference schedule and budget, or both options beyond the paper
        options = ("pipelined", "adaptive") if method == "uec_plus" else ("sync", "fixed")
        assert (uec["exploration"]["schedule"], uec["exploration"]["budget"]) == options
        assert algorithm["adv_estimator"] == "uec"
        # T' = 1.2, or T' = T = 1.0 for the control that isolates the exploration temperature
        temperature = config["actor_rollout_ref"]["rollout"]["temperature"] if method == "uec_same_temp" else 1.2
        assert (uec["exploration"]["n"], uec["exploration"]["temperature"]) == (20, temperature)
        # the paper's retention and the later branch's admission, or the released code's rules for both
        rules = ("abs_gt_1", "abs_gt") if method == "uec_release" else ("positive", "gt")
        assert (uec["exploration"]["retention"], uec["replay"]["admission"]) == rules
        assert uec["retention"]["regular_abs_adv"] == 0.05
        assert (uec["replay"]["adv_threshold"], uec["replay"]["capacity_multiple"], uec["replay"]["frequency"]) == (
            1.0,
            2,
            5,
        )
        assert config["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == "uec_agent"
    else:
        assert algorithm["adv_estimator"] == "grpo"
    kl = method != "dapo"
    assert actor["use_kl_loss"] is kl and (
        not kl or (actor["kl_loss_coef"], actor["kl_loss_type"]) == (0.01, "low_var_kl")
    )
    assert actor["clip_ratio_low"] == 0.2 and actor["clip_ratio_high"] == (0.28 if method == "dapo" else 0.2)
    assert actor["clip_ratio_c"] == 3.0 and actor["loss_agg_mode"] == "token-mean"
    assert actor["policy_loss"]["loss_mode"] == ("kl_cov" if method == "kl_cov" else "vanilla")
    if method == "kl_cov":
        assert (actor["policy_loss"]["kl_cov_ratio"], actor["policy_loss"]["ppo_kl_coef"]) == (0.002, 1.0)
    if method == "dapo":
        assert algorithm["filter_groups"]["enable"] is True and algorithm["filter_groups"]["metric"] == "acc"
        assert config["reward"]["reward_manager"]["name"] == "dapo"
    assert algorithm.get("entropy_adv", {}).get("enable", False) is (method == "entropy_adv")
    if method == "entropy_adv":
        assert (algorithm["entropy_adv"]["alpha"], algorithm["entropy_adv"]["kappa"]) == (0.4, 2.0)


def check_geo3k_engine_settings(config: dict) -> None:
    """What geo3k_base.sh adopts from verl's examples/grpo_trainer/run_qwen2_5_vl_7b_fsdp.sh."""
    arr = config["actor_rollout_ref"]
    assert arr["model"]["use_fused_kernels"] is True
    rollout = arr["rollout"]
    assert (rollout["enable_chunked_prefill"], rollout["free_cache_engine"], rollout["enforce_eager"]) == (
        False,
        True,
        False,
    )
    assert rollout["multi_stage_wake_up"] is False  # not adopted: read by no verl 0.9.1 code
    fsdp = arr["actor"]["fsdp_config"]
    assert (fsdp["param_offload"], fsdp["optimizer_offload"]) == (False, False)


@pytest.mark.parametrize("method", METHODS)
def test_text_scripts(method):
    config = dry_run(f"text_{method}.sh")
    check_paper_settings(config)
    check_engine_settings(config)
    assert config["actor_rollout_ref"]["model"]["use_fused_kernels"] is False
    check_method(config, method)
    assert config["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-Math-7B"
    assert config["data"]["train_files"] == "/data/uec/dapo_math_17k.parquet"
    assert config["data"]["val_files"] == ["/data/uec/aime2024.parquet", "/data/uec/math500.parquet"]
    assert config["trainer"]["experiment_name"] == f"text-qwen2.5-math-7b-{method}"


@pytest.mark.parametrize("method", METHODS)
def test_geo3k_scripts(method):
    config = dry_run(f"geo3k_{method}.sh")
    check_paper_settings(config)
    check_engine_settings(config)
    check_geo3k_engine_settings(config)
    check_method(config, method)
    assert config["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config["data"]["train_files"] == "/data/uec/geo3k_train.parquet"
    assert config["data"]["val_files"] == "/data/uec/geo3k_test.parquet"
    assert config["data"]["image_key"] == "images"
    assert config["data"]["mm_processor_kwargs"] == {"min_pixels": 262144, "max_pixels": 4194304}


def test_matched_grpo_needs_the_tasks_matched_n(tmp_path):
    # algo=grpo_matched on a task without task_algo/<task>_grpo_matched.yaml stops at composition, naming the file
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="Could not find 'task_algo/math_text_grpo_matched'"):
        compose("text_grpo.sh", "algo=grpo_matched")
    # with the file (here on hydra's search path) the GPU run is the paper's GRPO with the task's n
    (tmp_path / "task_algo").mkdir()
    (tmp_path / "task_algo" / "math_text_grpo_matched.yaml").write_text(
        "# @package _global_\nactor_rollout_ref:\n  rollout:\n    n: 6\n"
    )
    search = f"hydra.searchpath=[pkg://verl.trainer.config,file://{tmp_path}]"
    configs, _ = compose("text_grpo.sh", "algo=grpo_matched", search)
    config = configs[0]
    assert config["actor_rollout_ref"]["rollout"]["n"] == 6 and config["algorithm"]["adv_estimator"] == "grpo"
    assert config["uec"]["enable"] is False and config["data"]["train_batch_size"] == 512
    check_engine_settings(config)


def test_knobs_and_extra_overrides_reach_the_config():
    config = dry_run(
        "text_uec.sh",
        "uec.exploration.temperature=1.1",
        NNODES="2",
        GPUS_PER_NODE="4",
        TP="4",
        MODEL_PATH="/models/m",
        EXPERIMENT="mine",
        CKPT_DIR="/ckpt",
    )
    assert config["uec"]["exploration"]["temperature"] == 1.1
    assert (config["trainer"]["nnodes"], config["trainer"]["n_gpus_per_node"]) == (2, 4)
    assert config["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"] == 4
    assert (
        config["actor_rollout_ref"]["model"]["path"] == "/models/m" and config["trainer"]["experiment_name"] == "mine"
    )
    assert config["trainer"]["default_local_dir"] == "/ckpt/mine"
    assert runtime_env_vars(config)["VERL_FILE_LOGGER_PATH"] == "/ckpt/mine/metrics.jsonl"


def test_a_typo_fails_loudly():
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/gpu/text_uec.sh"), "uec.exploraton.n=8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode != 0 and "exploraton" in result.stderr


def test_sglang_is_refused_with_the_reason():
    stderr = refused("text_uec.sh", ROLLOUT="sglang")
    assert "ROLLOUT=sglang" in stderr and "vLLM only" in stderr


@pytest.mark.parametrize(
    "logger, expected",
    [
        ("console,wandb,tensorboard", ["console", "wandb", "tensorboard"]),
        ('["console","wandb"]', ["console", "wandb"]),  # the hydra-list form older instructions used
    ],
)
def test_logger_is_one_variable(logger, expected):
    config = dry_run("geo3k_uec.sh", LOGGER=logger, CKPT_DIR="/ckpt")
    assert config["trainer"]["logger"] == expected
    env_vars = runtime_env_vars(config)
    # the file logger only when asked for; tensorboard writes into the run's folder, not the worker's cwd
    assert "VERL_FILE_LOGGER_PATH" not in env_vars
    if "tensorboard" in expected:
        assert env_vars["TENSORBOARD_DIR"] == "/ckpt/geo3k-qwen2.5-vl-7b-uec/tensorboard"


def test_user_set_log_paths_and_the_request_log_reach_the_workers():
    config = dry_run(
        "text_grpo.sh",
        LOGGER="console,file,tensorboard",
        VERL_FILE_LOGGER_PATH="/logs/m.jsonl",
        TENSORBOARD_DIR="/logs/tb",
        UEC_AGENT_REQUEST_LOG="/logs/requests.jsonl",
        WANDB_MODE="offline",
    )
    assert runtime_env_vars(config) == {
        "VERL_FILE_LOGGER_PATH": "/logs/m.jsonl",
        "TENSORBOARD_DIR": "/logs/tb",
        "UEC_AGENT_REQUEST_LOG": "/logs/requests.jsonl",
        "WANDB_MODE": "offline",
    }


def test_relative_paths_are_made_absolute_for_the_workers(tmp_path):
    # Ray workers run in their own working directories: a relative path would land elsewhere or nowhere
    configs, _ = compose(
        "text_uec.sh", cwd=tmp_path, DATA_DIR="data", CKPT_DIR="ckpt", UEC_AGENT_REQUEST_LOG="logs/requests.jsonl"
    )
    config = configs[0]
    assert config["data"]["train_files"] == f"{tmp_path}/data/dapo_math_17k.parquet"
    assert config["trainer"]["default_local_dir"] == f"{tmp_path}/ckpt/text-qwen2.5-math-7b-uec"
    assert runtime_env_vars(config)["UEC_AGENT_REQUEST_LOG"] == f"{tmp_path}/logs/requests.jsonl"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LOGGER": "console,wandbb"}, "'wandbb' is not a verl logger"),
        ({"LOGGER": ","}, "LOGGER is empty"),
        ({"ATTN": "flash3"}, "ATTN=flash3"),
    ],
)
def test_bad_knobs_are_refused_before_composing(env, message):
    assert message in refused("text_uec.sh", **env)


def test_sdpa_is_the_one_variable_fallback_without_flash_attn():
    model = dry_run("geo3k_uec.sh", ATTN="sdpa")["actor_rollout_ref"]["model"]
    assert model["override_config"]["attn_implementation"] == "sdpa" and model["use_remove_padding"] is False
    assert model["use_fused_kernels"] is True  # verl's torch fused-kernel backend needs no flash-attn


@pytest.fixture
def fake_vllm(tmp_path):
    """A python path on which `vllm` is importable by name (the launcher only checks it is installed)."""
    (tmp_path / "fake" / "vllm").mkdir(parents=True)
    (tmp_path / "fake" / "vllm" / "__init__.py").write_text("")
    return str(tmp_path / "fake")


NO_VLLM = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM installed: a GPU environment")
TEXT_DATA = ("dapo_math_17k.parquet", "aime2024.parquet", "math500.parquet")


def data_dir(tmp_path: Path, files=TEXT_DATA) -> str:
    """A DATA_DIR holding the named files (empty: the launcher checks existence, the trainer checks contents)."""
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name in files:
        (folder / name).write_bytes(b"")
    return str(folder)


@pytest.fixture
def launch_env(fake_vllm, tmp_path):
    """A real (not dry) launch that passes the package and credential checks: fake vllm, sdpa, no wandb; a `ray` on
    PATH that records any call to it, in place of Ray's command line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ray = bin_dir / "ray"
    ray.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/ray_called"\n')
    ray.chmod(0o755)
    return {
        "CKPT_DIR": str(tmp_path / "ckpt"),
        "PYTHONPATH": fake_vllm,
        "WANDB_API_KEY": "",
        "HOME": str(tmp_path),
        "ATTN": "sdpa",
        "DATA_DIR": data_dir(tmp_path),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }


def nothing_started(tmp_path: Path) -> bool:
    """No run folder was created and Ray's command line was never called."""
    return not (tmp_path / "ckpt").exists() and not (tmp_path / "ray_called").exists()


@NO_VLLM
def test_a_real_launch_checks_packages_and_credentials_first(fake_vllm, tmp_path):
    base = {"CKPT_DIR": str(tmp_path / "ckpt"), "PYTHONPATH": "", "WANDB_API_KEY": "", "HOME": str(tmp_path)}
    base["DATA_DIR"] = data_dir(tmp_path)
    assert "has no vllm" in refused("text_uec.sh", dry=False, **base)
    base["PYTHONPATH"] = fake_vllm
    stderr = refused("text_uec.sh", dry=False, **base)
    assert "has no flash_attn" in stderr and "ATTN=sdpa" in stderr
    stderr = refused("text_uec.sh", dry=False, ATTN="sdpa", LOGGER="console,wandb", WANDB_MODE="", **base)
    assert "no wandb credentials" in stderr
    stderr = refused("text_uec.sh", dry=False, ATTN="sdpa", UEC_AGENT_REQUEST_LOG="/nonexistent/r.jsonl", **base)
    assert "UEC_AGENT_REQUEST_LOG=/nonexistent/r.jsonl" in stderr
    # every check passed: the run gets as far as uec_recipe's data check (the files are empty), having created its
    # folder and kept an earlier launch's metrics file that verl would truncate
    run_dir = tmp_path / "ckpt" / "text-qwen2.5-math-7b-uec"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "data": {}}\n')
    stderr = refused("text_uec.sh", dry=False, ATTN="sdpa", **base)
    assert f"{base['DATA_DIR']}/dapo_math_17k.parquet" in stderr and "no such" not in stderr
    kept = [p.name for p in run_dir.glob("metrics.*.jsonl")]
    assert len(kept) == 1 and not (run_dir / "metrics.jsonl").exists()


@NO_VLLM
@pytest.mark.parametrize(
    "script, change, message",
    [
        ("text_uec.sh", {"DATA_DIR": "{tmp}/nodata"}, "DATA_DIR={tmp}/nodata: no such folder"),
        ("text_uec.sh", {"DATA_DIR": "{tmp}/empty"}, "{tmp}/empty/dapo_math_17k.parquet: no such data file"),
        ("geo3k_grpo.sh", {}, "{tmp}/data/geo3k_train.parquet: no such data file"),
        ("text_uec.sh", {"MODEL_PATH": "/nonexistent/model"}, "MODEL_PATH=/nonexistent/model: no such folder"),
        ("text_uec.sh", {"UEC_AGENT_REQUEST_LOG": "/nonexistent/r.jsonl"}, "its folder does not exist"),
    ],
)
def test_a_missing_shared_path_is_named_before_anything_starts(launch_env, tmp_path, script, change, message):
    (tmp_path / "empty").mkdir()
    change = {key: value.format(tmp=tmp_path) for key, value in change.items()}
    stderr = refused(script, dry=False, **{**launch_env, **change})
    assert message.format(tmp=tmp_path) in stderr and "must exist" in stderr
    assert "every node" not in stderr  # a local run: the message does not speak of a cluster
    assert nothing_started(tmp_path)


@NO_VLLM
def test_on_a_cluster_each_shared_path_must_exist_on_every_node(launch_env, tmp_path):
    cluster = {**launch_env, "RAY_ADDRESS": "http://127.0.0.1:9"}
    stderr = refused("text_uec.sh", dry=False, **{**cluster, "MODEL_PATH": "/nonexistent/model"})
    assert "MODEL_PATH=/nonexistent/model" in stderr and "at the same path on every node" in stderr
    stderr = refused("text_uec.sh", dry=False, **{**cluster, "DATA_DIR": str(tmp_path / "nodata")})
    assert "task runner" in stderr and "at the same path on every node" in stderr
    # CKPT_DIR is not created on the head alone: every rank writes its shards into it
    stderr = refused("text_uec.sh", dry=False, **cluster)
    assert f"CKPT_DIR={tmp_path}/ckpt: no such folder" in stderr and "every node mounts" in stderr
    assert nothing_started(tmp_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@NO_VLLM
@pytest.mark.parametrize("address", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_an_unreachable_ray_address_is_refused_with_how_to_start_the_head(launch_env, tmp_path, address):
    (tmp_path / "ckpt").mkdir()  # a shared CKPT_DIR exists: the address is what fails
    address = address.format(port=free_port())
    stderr = refused("text_uec.sh", dry=False, RAY_ADDRESS=address, **launch_env)
    assert f"RAY_ADDRESS={address}: no Ray job server answers" in stderr
    assert "ray start --head --dashboard-host=0.0.0.0" in stderr and "nothing was submitted" in stderr
    assert not (tmp_path / "ray_called").exists() and not any((tmp_path / "ckpt").iterdir())


@NO_VLLM
def test_a_reachable_job_server_gets_the_submission(launch_env, tmp_path):
    class JobServer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # what Ray's dashboard answers at /api/version
            self.send_response(200 if self.path == "/api/version" else 404)
            self.end_headers()
            self.wfile.write(b'{"ray_version": "2.60.0"}')

        def log_message(self, *args):
            pass

    (tmp_path / "ckpt").mkdir()
    server = http.server.HTTPServer(("127.0.0.1", 0), JobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**launch_env, "RAY_ADDRESS": f"127.0.0.1:{server.server_port}"}
        result = subprocess.run(
            ["bash", str(REPO / "run_scripts/gpu/text_uec.sh")],
            capture_output=True,
            text=True,
            timeout=300,
            env=script_env(env),
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-2000:]
    args = (tmp_path / "ray_called").read_text().splitlines()
    assert args[:3] == ["job", "submit", f"--address=http://127.0.0.1:{server.server_port}"]
    assert args[args.index("--") + 1 :][:3] == [sys.executable, "-m", "uec_recipe.main_uec"]


def test_checkpoint_retention_has_an_overridable_default():
    trainer = dry_run("text_uec.sh")["trainer"]
    assert trainer["max_actor_ckpt_to_keep"] == 2
    assert dry_run("geo3k_dapo.sh", MAX_CKPT_TO_KEEP="5")["trainer"]["max_actor_ckpt_to_keep"] == 5
    assert dry_run("text_grpo.sh", "trainer.max_actor_ckpt_to_keep=null")["trainer"]["max_actor_ckpt_to_keep"] is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM installed: this would run the smoke")
def test_smoke_without_a_gpu_stops_before_building(tmp_path):
    stderr = refused("smoke.sh", dry=False, SMOKE_DIR=str(tmp_path))
    assert "sees no CUDA GPU" in stderr and not (tmp_path / "build").exists()
