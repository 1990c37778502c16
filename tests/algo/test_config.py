"""The uec section: defaults are the paper's, every bad value is rejected with a message naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from uec_recipe.algo.config import UECConfig, UECConfigError, load_and_validate, validate

REPO = Path(__file__).resolve().parents[2]


def composed(*overrides):
    with initialize_config_module(config_module="uec_recipe.config", version_base=None):
        return compose(config_name="uec_trainer", overrides=list(overrides))


def test_defaults_are_the_reference_settings():
    config = composed()
    uec = load_and_validate(config)
    assert (uec.exploration.n, uec.exploration.temperature, uec.exploration.retention) == (20, 1.2, "positive")
    assert uec.retention.regular_abs_adv == 0.05 and uec.batch_buffer.capacity_multiple == 2
    assert (uec.replay.adv_threshold, uec.replay.capacity_multiple, uec.replay.frequency) == (1.0, 2, 5)
    assert uec.retention.drop_overlong_positive == "all"  # the released code filters every survivor
    assert config.actor_rollout_ref.actor.optim.clip_grad == 1.0
    assert config.data.train_batch_size == 512 and config.actor_rollout_ref.rollout.n == 5
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6 and config.actor_rollout_ref.actor.kl_loss_coef == 0.01
    assert config.algorithm.adv_estimator == "uec"


@pytest.mark.parametrize(
    "override, key",
    [
        ("uec.exploration.n=1", "uec.exploration.n=1"),
        ("uec.exploration.temperature=0", "uec.exploration.temperature=0"),
        ("uec.exploration.retention=all", "uec.exploration.retention='all'"),
        ("uec.exploration.difficulty_threshold=2", "uec.exploration.difficulty_threshold=2"),
        ("uec.retention.regular_abs_adv=-1", "uec.retention.regular_abs_adv=-1"),
        ("uec.batch_buffer.capacity_multiple=0.5", "uec.batch_buffer.capacity_multiple=0.5"),
        ("uec.replay.admission=lt", "uec.replay.admission='lt'"),
        ("uec.replay.adv_threshold=-0.5", "uec.replay.adv_threshold=-0.5"),
        ("uec.replay.capacity_multiple=0.5", "uec.replay.capacity_multiple=0.5"),
        ("uec.replay.capacity_multiple=1.5", "uec.replay.capacity_multiple=1.5"),
        ("uec.retention.drop_overlong_positive=regular", "uec.retention.drop_overlong_positive='regular'"),
        ("uec.sample_poll_interval_s=0", "uec.sample_poll_interval_s=0"),
        ("+uec.exploration.drop_overlong_positive=false", "moved to uec.retention.drop_overlong_positive"),
        ("+uec.logprob_temperature=base", "uec.logprob_temperature: removed"),
        ("algorithm.rollout_correction.rollout_is=token", "algorithm.rollout_correction"),
        ("algorithm.rollout_correction.bypass_mode=True", "algorithm.rollout_correction"),
        ("algorithm.use_kl_in_reward=True", "algorithm.use_kl_in_reward=True"),
        ("algorithm.adv_estimator=gae", "algorithm.adv_estimator='gae'"),
        ("critic.enable=True", "critic.enable=True"),
        ("actor_rollout_ref.actor.grad_clip=0.5", "actor_rollout_ref.actor.grad_clip=0.5"),
        ("algorithm.norm_adv_by_std_in_grpo=False", "algorithm.norm_adv_by_std_in_grpo=False"),
        ("reward.reward_model.enable=True", "reward.reward_model.enable=True"),
        ("trainer.v1.sampler.sync_refill_failed_groups=True", "sync_refill_failed_groups=True"),
        ("trainer.rollout_data_dir=/tmp/rollouts", "trainer.rollout_data_dir"),
        ("uec.exploration.budget=adaptive uec.exploration.budget_floor=1", "budget_floor"),
        ("uec.replay.frequency=0", "uec.replay.frequency=0"),
        ("uec.n0=100", "uec.n0=100"),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=7", "log_prob_micro_batch_size_per_gpu=7"),
        ("actor_rollout_ref.rollout.n=1", "actor_rollout_ref.rollout.n=1"),
        ("actor_rollout_ref.rollout.name=vllmm", "actor_rollout_ref.rollout.name='vllmm'"),
        ("actor_rollout_ref.rollout.temperature=0", "actor_rollout_ref.rollout.temperature=0"),
        (
            "actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent",
            "default_agent_loop='single_turn_agent'",
        ),
        ("algorithm.filter_groups.enable=True", "algorithm.filter_groups.enable=True"),
        ("+uec.exploration.temprature=1.3", "uec.exploration.temprature: unknown key"),
    ],
)
def test_each_bad_value_is_named(override, key):
    with pytest.raises(UECConfigError) as error:
        load_and_validate(composed(*override.split()))
    assert key in str(error.value)


def test_baselines_are_not_refused_what_only_uec_cannot_honour():
    # GRPO runs verl's own step, where KL-in-reward and rollout correction do act.
    load_and_validate(composed("algo=grpo", "algorithm.use_kl_in_reward=True"))
    load_and_validate(composed("algo=grpo", "algorithm.rollout_correction.rollout_is=token"))
    with pytest.raises(UECConfigError, match="grad_clip"):  # a dead key is refused for every method
        load_and_validate(composed("algo=grpo", "actor_rollout_ref.actor.grad_clip=0.5"))


def test_all_problems_are_reported_at_once():
    problems = validate(
        UECConfig.from_mapping({"exploration": {"n": 0, "temperature": -1}, "replay": {"frequency": 0}})
    )
    assert len(problems) == 3


def test_bad_config_fails_before_ray_starts(tmp_path):
    env = {**os.environ, "UEC_DRY_RUN": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "uec_recipe.main_uec", "uec.exploration.temperature=-1"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "uec.exploration.temperature=-1" in result.stderr and "ray init" not in result.stdout.lower()


def test_the_cpu_demo_groups_compose_into_a_valid_configuration(demo):
    from uec_recipe.main_uec import dry_run_config

    paths = [f"actor_rollout_ref.model.path={demo.model_dir}", f"data.train_files={demo.train_file}"]
    config = dry_run_config(["platform=cpu", "task=digit_sum", *paths, f"data.val_files={demo.test_file}"])
    assert config.actor_rollout_ref.rollout.name == "hf" and config.trainer.n_gpus_per_node == 1
    assert config.trainer.v1.trainer_mode == "uec" and config.uec.sample_poll_interval_s == 0.05
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n, config.uec.exploration.n) == (16, 4, 8)
    reward = config.reward.custom_reward_function
    assert (reward.path, reward.name) == ("pkg://uec_lab.demo.reward", "compute_score")


def test_a_task_can_adjust_one_method_preset():
    # task_algo/digit_sum_dapo.yaml: DAPO's overlong buffer inside the demo's 16-token responses
    assert composed("algo=dapo", "task=digit_sum").reward.reward_kwargs.overlong_buffer_cfg.len == 4
    assert composed("algo=dapo", "task=vlm_counting").reward.reward_kwargs.overlong_buffer_cfg.len == 4
    assert composed("algo=dapo").reward.reward_kwargs.overlong_buffer_cfg.len == 410  # the preset's, for 2048


def test_the_schema_defaults_are_the_yaml_defaults():
    # the schema (uec_recipe/algo/config.py) states types; its defaults must not drift from uec_trainer.yaml's
    from dataclasses import asdict

    from omegaconf import OmegaConf

    assert asdict(UECConfig()) == OmegaConf.to_container(composed().uec)


@pytest.mark.parametrize(
    "override, message",
    [
        ("uec.exploration.n=abc", "uec.exploration.n='abc': must be an integer >= 2"),
        ("uec.exploration.n=2.5", "uec.exploration.n=2.5: must be an integer >= 2"),
        ("uec.enable=maybe", "uec.enable='maybe': must be true or false"),
        ("uec.exploration.temperature=hot", "uec.exploration.temperature='hot': must be a number > 0"),
        ("uec.n0=many", "uec.n0='many': must be null"),
        ("+uec.replay.size=3", "uec.replay.size: unknown key (known: admission, adv_threshold"),
        ("+uec.buffers.size=3", "uec.buffers: unknown key"),
    ],
)
def test_the_schema_names_each_badly_typed_or_unknown_key(override, message):
    with pytest.raises(UECConfigError) as error:
        load_and_validate(composed(override))
    assert message in str(error.value)


def test_type_problems_are_reported_together():
    with pytest.raises(UECConfigError) as error:
        UECConfig.from_mapping({"exploration": {"n": "x", "temperature": "y"}, "replay": {"frequency": 1.5}})
    assert str(error.value).count("\n  - ") == 3


def test_uec_trainer_mode_without_a_uec_section_is_refused():
    # verl's own main_ppo config has no uec section: trainer_mode=uec must not quietly train GRPO
    from omegaconf import OmegaConf

    bare = OmegaConf.create({"trainer": {"v1": {"trainer_mode": "uec"}}})
    with pytest.raises(UECConfigError, match=r"\+uec.enable=true"):
        load_and_validate(bare)


def test_sequence_parallel_ranks_share_a_batch():
    # 8 GPUs with sequence parallel 2 are 4 data-parallel ranks: N0 = 2560 gives each 640 rows, micro 128 divides it
    config = composed(
        "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=128",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32",
    )
    load_and_validate(config)


# ---- the controls' presets (docs/baselines.md, "Controls") --------------------------------------------------------


def changed_keys(config, reference) -> dict:
    """Every leaf whose value differs between two composed configurations: {dotted key: (value, reference value)}.
    Interpolations are compared unresolved: keys derived from a changed one (verl copies rollout.n and the experiment
    name into several sections) are not changes of their own."""
    from omegaconf import OmegaConf

    def leaves(node, prefix=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], node

    ours = dict(leaves(OmegaConf.to_container(config)))
    theirs = dict(leaves(OmegaConf.to_container(reference)))
    keys = ours.keys() | theirs.keys()
    return {key: (ours.get(key), theirs.get(key)) for key in keys if ours.get(key) != theirs.get(key)}


def test_the_release_preset_is_the_reference_with_the_released_rules():
    config = composed("algo=uec_release")
    uec = load_and_validate(config)
    assert (uec.exploration.retention, uec.replay.admission) == ("abs_gt_1", "abs_gt")
    assert changed_keys(config, composed("algo=uec")) == {
        "uec.exploration.retention": ("abs_gt_1", "positive"),
        "uec.replay.admission": ("abs_gt", "gt"),
        "trainer.experiment_name": ("uec_release", "uec"),
    }


def test_the_same_temperature_preset_explores_at_the_rollout_temperature():
    config = composed("algo=uec_same_temp")
    assert load_and_validate(config).exploration.temperature == config.actor_rollout_ref.rollout.temperature == 1.0
    assert changed_keys(config, composed("algo=uec")) == {
        "uec.exploration.temperature": ("${actor_rollout_ref.rollout.temperature}", 1.2),
        "trainer.experiment_name": ("uec_same_temp", "uec"),
    }
    # an interpolation, not a copy: T' follows whatever sets T
    moved = composed("algo=uec_same_temp", "actor_rollout_ref.rollout.temperature=0.7")
    assert load_and_validate(moved).exploration.temperature == 0.7


@pytest.mark.parametrize("preset", ["uec_release", "uec_same_temp"])
def test_the_control_presets_pass_every_check_on_the_cpu_platform(preset):
    from uec_recipe.main_uec import dry_run_config

    config = dry_run_config(["platform=cpu", "task=digit_sum", f"algo={preset}"])
    assert config.uec.enable and config.actor_rollout_ref.rollout.name == "hf"
    assert config.trainer.experiment_name == preset


@pytest.mark.parametrize("task, missing", [("digit_sum", "digit_sum_grpo_matched"), (None, "None_grpo_matched")])
def test_matched_grpo_without_the_tasks_matched_n_does_not_compose(task, missing):
    # no silent fallback to plain GRPO: the preset requires task_algo/<task>_grpo_matched.yaml
    from hydra.errors import MissingConfigException

    overrides = ["algo=grpo_matched", *([f"task={task}"] if task else [])]
    with pytest.raises(MissingConfigException, match=f"Could not find 'task_algo/{missing}'"):
        composed(*overrides)


def matched_n_folder(folder: Path, task: str, n: int) -> str:
    """A config folder holding task_algo/<task>_grpo_matched.yaml, and the override that adds it to hydra's search
    path (after verl's, as uec_trainer.yaml has it): a task's matched n without a file in the package."""
    (folder / "task_algo").mkdir(parents=True)
    (folder / "task_algo" / f"{task}_grpo_matched.yaml").write_text(
        f"# @package _global_\nactor_rollout_ref:\n  rollout:\n    n: {n}\n"
    )
    return f"hydra.searchpath=[pkg://verl.trainer.config,file://{folder}]"


def test_matched_grpo_is_grpo_with_the_tasks_samples_per_prompt(tmp_path):
    from uec_recipe.main_uec import dry_run_config

    search = matched_n_folder(tmp_path, "digit_sum", 8)  # 16 x 8 rows: micro 32 divides
    config = dry_run_config(["platform=cpu", "task=digit_sum", "algo=grpo_matched", search])
    grpo = dry_run_config(["platform=cpu", "task=digit_sum", "algo=grpo"])
    # the task's file wins over the task's own n (4): it is loaded again after the task group
    assert changed_keys(config, grpo) == {
        "actor_rollout_ref.rollout.n": (8, 4),
        "trainer.experiment_name": ("grpo_matched", "grpo"),
    }
    assert config.algorithm.adv_estimator == "grpo" and not config.uec.enable
    # the study's setting group sets n = 5 after the task: the matched n still wins
    study = composed("platform=cpu", "task=digit_sum", "setting=study", "algo=grpo_matched", search)
    assert study.actor_rollout_ref.rollout.n == 8


@pytest.mark.parametrize("algo", ["grpo", "dapo", "grpo_matched"])
def test_a_micro_batch_that_does_not_divide_the_mini_batch_is_refused_before_ray(algo, tmp_path):
    # verl asserts this inside the actor worker, once Ray and the models are up; the entry point's checks stop first
    from uec_recipe.main_uec import dry_run_config

    overrides = ["platform=cpu", "task=digit_sum", f"algo={algo}", "data.train_batch_size=16"]
    overrides += ["actor_rollout_ref.actor.ppo_mini_batch_size=8", "actor_rollout_ref.rollout.n=5"]
    if algo == "grpo_matched":
        overrides += [matched_n_folder(tmp_path, "digit_sum", 5)]
    dry_run_config([*overrides, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"])  # 40 rows: 8 divides
    with pytest.raises(ValueError, match=r"ppo_micro_batch_size_per_gpu=16: .* 40 rows .* pick a divisor of 40"):
        dry_run_config([*overrides, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16"])
