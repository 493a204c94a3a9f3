"""The machine a run measured on: CPU, cores, memory, load, Python and library versions.

Every report carries these, so a number is never read without its hardware.

>>> details = machine_details()
>>> {"cpu", "cores", "python", "libraries"} <= set(details)
True
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["LIBRARIES", "machine_details"]

#: distributions whose versions every report names
LIBRARIES = ("pets", "numpy", "scipy", "torch", "tenseal", "crypten", "opacus", "opendp",
             "dp-accounting", "flwr", "scikit-learn", "matplotlib")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_details() -> dict[str, Any]:
    """CPU model, logical cores (and those this process may use), memory, OS, versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": _memory_bytes(),
        "load_average_at_start": load,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
