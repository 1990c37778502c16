"""Hydra entry point: ``python -m uec_recipe.main_uec [overrides]``.

Composes ``uec_recipe/config/uec_trainer.yaml`` (which inherits verl's ``ppo_trainer``) with the config groups
selected on the command line (``algo=``, ``platform=``, ``task=``, ...; the defaults list there names them all),
checks the whole configuration and the datasets before Ray starts, then hands over to verl's own V1 task runner.
The trainer class is selected by ``trainer.v1.trainer_mode=uec``, registered by the plugin in the task-runner
process.

``UEC_DRY_RUN=1`` stops after the checks and prints the resolved configuration (no Ray, no GPU, no weights).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import OmegaConf

DRY_RUN_HEADER = "# ---- resolved configuration (UEC_DRY_RUN=1) ----"


def check_config(config, dry_run: bool = False) -> None:
    """Every check that can fail before any expensive work: verl's, UEC-RL's, the data schema and the UEC state a
    resume would load."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from uec_recipe.algo.config import check_actor_micro_batch, load_and_validate
    from uec_recipe.baselines import check_baselines
    from uec_recipe.checkpoint import check_resume_state

    load_and_validate(config)
    check_actor_micro_batch(config)
    check_baselines(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    check_datasets(config, dry_run=dry_run)
    check_resume_state(config)  # a damaged UEC state is refused by name here, before Ray starts


def check_datasets(config, dry_run: bool = False) -> None:
    """Schema-check every train/val parquet (uec_recipe.data_schema); a dry run only notes files not there yet."""
    from uec_recipe.data_schema import validate_rl_parquet

    for key in ("train_files", "val_files"):
        files = config.data.get(key)
        if files is None:
            continue
        for path in [files] if isinstance(files, str) else list(files):
            if not os.path.exists(path):
                if dry_run:
                    print(f"[uec] dry run: data.{key} {path} does not exist yet; not checked", file=sys.stderr)
                    continue
                raise FileNotFoundError(
                    f"data.{key}: {path} does not exist (prepare it with python -m data_prep.prepare)"
                )
            validate_rl_parquet(path, require_images=None)


def dry_run_config(overrides: list[str]):
    """What ``UEC_DRY_RUN=1 python -m uec_recipe.main_uec OVERRIDES`` composes and checks, in this process."""
    from hydra import compose, initialize_config_module
    from verl.utils.device import auto_set_device

    with initialize_config_module(config_module="uec_recipe.config", version_base=None):
        config = compose(config_name="uec_trainer", overrides=list(overrides))
    auto_set_device(config)
    check_config(config, dry_run=True)
    return config


def run(config) -> None:
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    dry_run = os.environ.get("UEC_DRY_RUN", "0") not in ("", "0", "false")
    check_config(config, dry_run=dry_run)
    if dry_run:
        print(DRY_RUN_HEADER)
        print(OmegaConf.to_yaml(config, resolve=True), flush=True)
        print("[uec] dry run: configuration composed and validated; not starting Ray", file=sys.stderr)
        return
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    run_ppo(config, task_runner_class=TaskRunnerV1)


@hydra.main(config_path="config", config_name="uec_trainer", version_base=None)
def main(config) -> None:
    run(config)


if __name__ == "__main__":
    main()
