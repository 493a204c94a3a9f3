"""Results files kept in the repository: what a run measured, with the machine it ran on.

Each published section (the matrix, the quick matrix, the assessment, the MPC, HE and
HE-models comparisons) is one JSON file under ``benchmarks/results/``, written by
:func:`record` and read by :mod:`pets_benchmarks.doctables`, which writes every results
table of README.md and docs/ from them. A file says when and where it was measured and
whether the machine was loaded (other work on its cores), so a slow figure is never read
without that.

>>> sorted(SECTIONS)
['assess', 'he', 'he-models', 'matrix', 'matrix-quick', 'mpc']
>>> loaded({"usable_cores": 2, "load_average_at_start": [0.3, 0.2, 0.1]}, [0.4, 0.3, 0.2])
False
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pets_benchmarks.machine import machine_details
from pets_benchmarks.matrix.cells import finite_json

__all__ = ["FORMAT", "RESULTS_DIR", "SECTIONS", "load", "loaded", "record", "run_section",
           "save"]

FORMAT = "pets-results/1"
#: where the results files live: ``benchmarks/results`` of this checkout
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
#: a machine counts as loaded when its 1-minute load average exceeds this share of its
#: usable cores, at the start or at the end of the run
LOADED_SHARE = 0.75

Say = Callable[[str], None]


def _matrix(quick: bool) -> Callable[[Say], dict[str, Any]]:
    def run(say: Say) -> dict[str, Any]:
        from pets_benchmarks.matrix import MatrixConfig, run_matrix

        config = MatrixConfig.quick() if quick else MatrixConfig.full()
        say(f"the matrix, preset {config.name}")
        return run_matrix(config, progress=False).to_dict()

    return run


def _assess(say: Say) -> dict[str, Any]:
    from pets_benchmarks.assess import quick, run_assessment

    say("the privacy assessment, quick preset")
    return run_assessment(quick()).to_dict()


def _mpc(say: Say) -> dict[str, Any]:
    from pets_benchmarks.mpc import run_mpc

    report = run_mpc(progress=say)
    return {"inference": report.table.as_dicts(), "training": report.training.as_dicts(),
            "ratios": report.ratios, "same": report.same}


def _he(say: Say) -> dict[str, Any]:
    from pets_benchmarks.he import run_he

    report = run_he(batch=4096, latency_samples=4, recipe_samples=4, progress=say)
    return {"rows": report.table.as_dicts(), "ratios": report.ratios,
            "parameters": report.parameters}


def _he_models(say: Say) -> dict[str, Any]:
    from pets_benchmarks.he_models import run_he_models

    report = run_he_models(progress=say)
    return {"rows": report.table.as_dicts(), "ratios": report.ratios,
            "parameters": report.parameters}


#: section -> (what it runs, in words; the run)
SECTIONS: dict[str, tuple[str, Callable[[Say], dict[str, Any]]]] = {
    "matrix": ("pets bench (the full matrix)", _matrix(False)),
    "matrix-quick": ("pets bench --quick", _matrix(True)),
    "assess": ("pets assess --quick", _assess),
    "mpc": ("pets bench --only mpc", _mpc),
    "he": ("pets bench --only he", _he),
    "he-models": ("pets bench --only he-models", _he_models),
}


def _commit() -> str | None:
    """The checkout's commit (with ``+changes`` if files differ from it), when it is a git
    checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS_DIR.parent,
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=RESULTS_DIR.parent, capture_output=True, text=True,
                               timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def loaded(machine: dict[str, Any], at_end: Sequence[float] | None) -> bool:
    """Whether other work kept the cores busy: a 1-minute load average above
    :data:`LOADED_SHARE` of the usable cores when the run started. The load at the end
    is kept in the file but not judged: it counts the run's own party processes."""
    cores = machine.get("usable_cores") or machine.get("cores") or 1
    start = machine.get("load_average_at_start")
    return bool(start and start[0] > LOADED_SHARE * cores)


def save(section: str, data: dict[str, Any], *, machine: dict[str, Any], seconds: float,
         note: str = "", folder: Path = RESULTS_DIR) -> Path:
    """Write ``data`` of ``section`` with the machine, the load and ``note``."""
    at_end = _load_average()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{section}.json"
    document = {
        "format": FORMAT, "section": section, "command": SECTIONS[section][0],
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(seconds, 1), "commit": _commit(), "machine": machine,
        "load_average_at_end": at_end,
        "loaded": loaded(machine, at_end), "note": note, "data": finite_json(data),
    }
    path.write_text(json.dumps(document, indent=1, default=str, allow_nan=False) + "\n")
    return path


def load(section: str, folder: Path = RESULTS_DIR) -> dict[str, Any]:
    """The results file of ``section`` (see :func:`save`)."""
    path = folder / f"{section}.json"
    if not path.exists():
        from pets.errors import ParameterError

        raise ParameterError(f"no results file {path}; make it with: pets bench --record "
                             f"--section {section}")
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def run_section(section: str, *, note: str = "", folder: Path = RESULTS_DIR,
                say: Say = print) -> Path:
    """Run ``section`` once and save its results file."""
    machine = machine_details()
    start = time.perf_counter()
    data = SECTIONS[section][1](say)
    path = save(section, data, machine=machine, seconds=time.perf_counter() - start, note=note,
                folder=folder)
    say(f"{section}: {time.perf_counter() - start:.0f} s, wrote {path}")
    return path


def record(sections: Sequence[str] = tuple(SECTIONS), *, note: str = "",
           folder: Path = RESULTS_DIR, say: Say = print) -> list[Path]:
    """Run each section and save its results file (then
    :func:`pets_benchmarks.doctables.update_docs` writes the tables from them)."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        from pets.errors import ParameterError

        raise ParameterError(f"no results section {', '.join(unknown)}; choose from: "
                             f"{', '.join(SECTIONS)}")
    return [run_section(section, note=note, folder=folder, say=say) for section in sections]
