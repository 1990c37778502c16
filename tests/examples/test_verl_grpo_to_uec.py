"""examples/verl_grpo_to_uec without starting Ray: both scripts compose verl's own configuration (DRY_RUN=1, hydra's
--cfg job) on the CPU demo; UEC-RL's settings appear only in uec.sh's, and `diff grpo.sh uec.sh` is only the lines
its README shows. The end-to-end run of uec.sh is in test_other_model_family.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "verl_grpo_to_uec"
GRPO, UEC = EXAMPLE / "grpo.sh", EXAMPLE / "uec.sh"

# The keys through which the two composed configurations may differ: UEC-RL's three settings of verl keys (its uec
# section comes on top) and the run's name.
UEC_ONLY = {
    "algorithm.adv_estimator": ("grpo", "uec"),
    "trainer.v1.trainer_mode": ("sync", "uec"),
    "actor_rollout_ref.rollout.agent.default_agent_loop": ("single_turn_agent", "uec_agent"),
}
NAMED_BY_SCRIPT = (
    "trainer.experiment_name",
    "trainer.default_local_dir",
    "actor_rollout_ref.rollout.trace.experiment_name",  # ${trainer.experiment_name}
)


def run_script(script: Path, *overrides: str, env_extra=None) -> subprocess.CompletedProcess:
    """A script under DRY_RUN=1, with only the knobs ``env_extra`` gives (none inherited from this process)."""
    env = {**os.environ, "PYTHON": sys.executable, "DRY_RUN": "1", **(env_extra or {})}
    for name in ("MODEL", "TRAIN", "TEST", "STEPS", "OUT", "CPU", "VERL_USE_EXTERNAL_MODULES"):
        if name not in (env_extra or {}):
            env.pop(name, None)
    return subprocess.run(["bash", str(script), *overrides], capture_output=True, text=True, timeout=300, env=env)


def compose(script: Path, *overrides: str, env_extra=None) -> dict:
    """The configuration a script would train with, as hydra prints it (resolved); no Ray, no weights."""
    result = run_script(script, *overrides, env_extra=env_extra)
    assert result.returncode == 0, result.stderr[-3000:]
    # verl's import-time log lines start with a level name; the configuration is the YAML after them
    lines = [line for line in result.stdout.splitlines() if not re.match(r"^(INFO|WARNING|DEBUG|ERROR)[: ]", line)]
    return yaml.safe_load("\n".join(lines))


def flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


@pytest.fixture(scope="module")
def composed(demo):
    # No MODEL/TRAIN/TEST: both scripts find the demo's paths themselves (built and cached by the fixture).
    return compose(GRPO), compose(UEC)


def test_both_scripts_run_verls_own_config_on_the_cpu_demo(composed, demo):
    for config in composed:
        assert config["actor_rollout_ref"]["model"]["path"] == str(demo.model_dir)
        assert config["data"]["train_files"] == str(demo.train_file)
        assert config["data"]["val_files"] == str(demo.test_file)
        reward = config["reward"]["custom_reward_function"]
        assert (reward["path"], reward["name"]) == ("pkg://uec_lab.demo.reward", "compute_score")
        # the CPU backend's settings (uec_recipe/config/platform/cpu_verl.yaml) reach the run
        assert config["trainer"]["device"] == "cpu" and config["actor_rollout_ref"]["rollout"]["name"] == "hf"
        assert config["actor_rollout_ref"]["actor"]["strategy"] == "fsdp2"
        assert config["trainer"]["logger"] == ["console", "file"]


def test_uec_settings_appear_only_in_uec_sh(composed):
    grpo, uec = (flatten(config) for config in composed)
    for key, (plain, with_uec) in UEC_ONLY.items():
        assert (grpo[key], uec[key]) == (plain, with_uec), key
    assert not any(key.startswith("uec.") for key in grpo)
    assert {key: value for key, value in uec.items() if key.startswith("uec.")} == {
        "uec.enable": True,
        "uec.exploration.n": 8,
        "uec.exploration.temperature": 1.2,
        "uec.replay.adv_threshold": 0.5,
        "uec.replay.frequency": 2,
        "uec.sample_poll_interval_s": 0.05,  # platform/cpu.yaml's, on top of cpu_verl.yaml
    }
    # everything else is the same run
    differing = {key for key in grpo.keys() | uec.keys() if grpo.get(key) != uec.get(key)}
    assert differing == set(UEC_ONLY) | set(NAMED_BY_SCRIPT) | {k for k in uec if k.startswith("uec.")}


def test_uec_sh_passes_the_recipes_checks_and_grpo_sh_would_not_run_uec(composed):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from uec_recipe.algo.config import UECConfig, load_and_validate

    grpo, uec = (OmegaConf.create(config) for config in composed)
    checked = load_and_validate(uec)  # what the UEC trainer checks when Ray has started it
    assert checked.enable and checked.exploration.n == 8 and checked.replay.frequency == 2
    validate_config(config=uec, use_reference_policy=need_reference_policy(uec), use_critic=need_critic(uec))
    # Without a uec section (grpo.sh's config), the UEC trainer would run verl's own step: hence +uec.enable=true.
    assert grpo.get("uec") is None and UECConfig.from_mapping(grpo.get("uec")).enable is False


def test_overrides_and_cpu_0(demo):
    """Keys uec.sh sets take a later override without "+", other uec keys need one; CPU=0 passes no CPU override."""
    env = {"MODEL": str(demo.model_dir), "TRAIN": str(demo.train_file), "TEST": str(demo.test_file), "CPU": "0"}
    overrides = ["uec.replay.frequency=5", "+uec.exploration.difficulty_threshold=0.2"]
    config = compose(UEC, *overrides, "actor_rollout_ref.rollout.name=vllm", env_extra=env)
    assert config["uec"]["replay"]["frequency"] == 5
    assert config["uec"]["exploration"]["difficulty_threshold"] == 0.2
    assert config["trainer"]["device"] == "cuda" and config["actor_rollout_ref"]["rollout"]["name"] == "vllm"
    assert "sample_poll_interval_s" not in config["uec"] and config["uec"]["enable"] is True
    refused = run_script(UEC, "uec.exploration.difficulty_threshold=0.2", env_extra=env)
    assert refused.returncode != 0 and "Key 'difficulty_threshold' is not in struct" in refused.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"STEPS": "0"}, "STEPS must be a positive integer, got '0'"),
        ({"CPU": "yes"}, "CPU must be 1 or 0, got 'yes'"),
        ({"MODEL": "/models/m"}, "TRAIN is not set: give MODEL, TRAIN and TEST together"),
        ({"MODEL": "/m", "TRAIN": "/no/train.parquet", "TEST": "/t"}, "TRAIN=/no/train.parquet: no such file"),
    ],
)
def test_missing_inputs_fail_clearly(env, message, tmp_path):
    for script in (GRPO, UEC):
        result = run_script(script, env_extra={**env, "OUT": str(tmp_path)})
        assert result.returncode == 2 and message in result.stderr, (script.name, result.stderr)


def diff_lines() -> tuple[list[str], list[str], str]:
    result = subprocess.run(["diff", str(GRPO), str(UEC)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    removed = [line[2:] for line in result.stdout.splitlines() if line.startswith("< ")]
    added = [line[2:] for line in result.stdout.splitlines() if line.startswith("> ")]
    return removed, added, result.stdout


def code(lines: list[str]) -> list[str]:
    """The lines that do something: comments and blank lines left out, trailing comments cut."""
    out = []
    for line in lines:
        stripped = re.sub(r"\s+# .*$", "", line).strip()
        if stripped and not stripped.startswith("#"):
            out.append(stripped)
    return out


def test_the_diff_is_only_the_uec_lines():
    removed, added, _ = diff_lines()
    assert code(removed) == [
        "CPU_ARGS=(hydra.searchpath=[pkg://uec_recipe.config] +platform=cpu_verl)",
        "algorithm.adv_estimator=grpo",
    ]
    assert code(added) == [
        "CPU_ARGS=(hydra.searchpath=[pkg://uec_recipe.config] +platform=cpu)",
        "algorithm.adv_estimator=uec",
        "trainer.v1.trainer_mode=uec",
        "actor_rollout_ref.rollout.agent.default_agent_loop=uec_agent",
        "+uec.enable=true",
        "+uec.exploration.n=8",
        "+uec.exploration.temperature=1.2",
        "+uec.replay.adv_threshold=0.5",
        "+uec.replay.frequency=2",
        # verl must load the plugin: the entry point of the installed package, or VERL_USE_EXTERNAL_MODULES
        'if [[ ",${VERL_USE_EXTERNAL_MODULES:-}," != *,uec_recipe.plugin,* ]]; then',
        '"$PYTHON" -c \'import importlib.metadata as m, sys',
        'sys.exit(not any(e.value == "uec_recipe.plugin" for e in m.entry_points(group="verl.plugins")))\' ||',
        'die "verl would not load UEC-RL: pip install -e $ROOT, or set VERL_USE_EXTERNAL_MODULES=uec_recipe.plugin"',
        "fi",
    ]


def test_the_readme_shows_the_diff_as_it_is():
    _, _, diff = diff_lines()
    readme = (EXAMPLE / "README.md").read_text()
    shown = re.search(r"```diff\n(.*?)```", readme, re.S)
    assert shown and shown.group(1) == diff, "README.md's diff block is not the output of `diff grpo.sh uec.sh`"


def test_verl_loads_the_plugin_through_verl_use_external_modules_too():
    """The alternative to the entry point: with entry points switched off, VERL_USE_EXTERNAL_MODULES registers UEC."""
    probe = (
        "import verl.trainer.ppo.core_algos as c, verl.experimental.agent_loop.agent_loop as a;"
        "print('uec' in c.ADV_ESTIMATOR_REGISTRY, 'uec_agent' in a._agent_loop_registry)"
    )
    base = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    base.pop("VERL_USE_EXTERNAL_MODULES", None)
    for extra, expected in (({}, "False False"), ({"VERL_USE_EXTERNAL_MODULES": "uec_recipe.plugin"}, "True True")):
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env={**base, **extra}
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == expected, extra
