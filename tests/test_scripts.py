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
        (["--task", "audio"], "--task must be text or vlm"),
    ],
)
def test_quickstart_rejects_bad_flags(args, message):
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/quickstart_cpu.sh"), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "[setup]" not in result.stderr and "[demo]" not in result.stderr
