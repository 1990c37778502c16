"""What machine a build or a run happened on: CPU model, core count, Python (recorded beside results)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"
