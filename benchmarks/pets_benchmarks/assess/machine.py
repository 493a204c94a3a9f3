"""The machine a run measured on: CPU, cores, memory, load, library versions.

Timings in the matrix are only comparable on the same machine; the report names it.

>>> info = describe_machine()
>>> info["cores"] >= 1 and "torch" in info["versions"]
True
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["describe_machine"]

PACKAGES = ("pets", "numpy", "scipy", "scikit-learn", "torch", "tenseal", "crypten", "opacus",
            "opendp", "dp-accounting", "flwr", "matplotlib")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, Any]:
    """CPU model, cores usable by this process, memory, load average, versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": usable,
        "memory_gib": _memory_gib(),
        "load_average_at_start": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
    }
