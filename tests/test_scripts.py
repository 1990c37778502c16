"""The quickstart's command line: bad input is a usage message and exit code 2, before any work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unknown argument: --bogus"),
        (["--steps", "zero"], "--steps must be a positive integer"),
        (["--steps"], "usage:"),
        (["--algo", "ppo2"], "--algo must be one of"),
        (["--task", "audio"], "--task must be chains, digits or vlm"),
    ],
)
def test_quickstart_rejects_bad_flags(args, message):
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/quickstart_cpu.sh"), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "[setup]" not in result.stderr and "[demo]" not in result.stderr


def load_demo_env(builder: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """run_scripts/demo_env.sh's load_demo_env with a stand-in builder (a python that runs ``builder``), under set -eu
    as the launchers run it; prints the four variables afterwards."""
    python = tmp_path / "python"
    python.write_text(f"#!/usr/bin/env bash\n{builder}\n")
    python.chmod(0o755)
    script = (
        f'set -euo pipefail; source "{REPO}/run_scripts/demo_env.sh"; load_demo_env "{python}" uec_lab.demo.build; '
        'printf "%s\\n" "$DEMO_MODEL" "$DEMO_TRAIN" "$DEMO_TEST" "$DEMO_REPORT"; echo reached'
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


def test_a_failed_demo_build_stops_the_launcher_at_the_build(tmp_path):
    result = load_demo_env("echo 'DEMO_MODEL=/half/written'; echo 'cannot build' >&2; exit 3", tmp_path)
    assert result.returncode != 0 and "reached" not in result.stdout
    assert "building the demo failed" in result.stderr and "unbound variable" not in result.stderr


def test_demo_paths_with_spaces_arrive_whole(tmp_path):
    lines = [f"DEMO_{key}=/cache dir/uec rl/{key.lower()} x" for key in ("MODEL", "TRAIN", "TEST", "REPORT")]
    result = load_demo_env("printf '%s\\n' " + " ".join(f"'{line}'" for line in lines), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [line.split("=", 1)[1] for line in lines] + ["reached"]


def test_a_builder_that_prints_no_paths_is_an_error(tmp_path):
    result = load_demo_env("echo 'DEMO_MODEL=/m'", tmp_path)
    assert result.returncode != 0 and "printed no DEMO_TRAIN line" in result.stderr


def test_no_launcher_reads_the_removed_override_files():
    # the CPU, demo, study and VLM settings are config groups now (uec_recipe/config/); nothing may source the files
    launchers = [*REPO.glob("run_scripts/**/*.sh"), *REPO.glob("examples/**/*.sh"), REPO / "uec_lab/study/run.py"]
    for path in launchers:
        text = path.read_text()
        for name in ("cpu_overrides.sh", "demo_overrides.sh", "study_overrides.sh", "vlm_overrides.sh"):
            assert name not in text, f"{path} still reads {name}"
