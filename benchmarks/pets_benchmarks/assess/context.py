"""What the stages share: the workload, the trained models, and the protected runs' results.

The runner fills a :class:`Context` once; each stage module reads it and returns its cells.
A protected run that was left out is ``None`` (its cells say *skipped*); one that raised
holds the exception (its cells say *failed*, with the error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pets_benchmarks.assess.cells import Cell, Cost
from pets_benchmarks.assess.config import AssessConfig
from pets_benchmarks.assess.workload import Trained, Workload

__all__ = ["Context", "from_run"]


@dataclass
class Context:
    """Inputs of every stage (see the module docstring)."""

    config: AssessConfig
    workload: Workload
    evaluator: Any
    plain: Any
    plain_cost: Cost
    dp: dict[float, Trained] = field(default_factory=dict)
    dp_cost: dict[float, Cost] = field(default_factory=dict)
    he: Any = None
    mpc: Any = None
    fl: Any = None


def from_run(stage: str, threat: str, technique: str, run: Any, build: Callable[[Any], Cell],
             *, skipped: str) -> Cell:
    """``build(run)``, or a *skipped* cell (``run is None``) or a *failed* one (it raised)."""
    if run is None:
        return Cell(stage, threat, technique, "skipped", note=skipped)
    if isinstance(run, BaseException):
        return Cell(stage, threat, technique, "failed",
                    note=f"the run this cell needs failed: {type(run).__name__}: {run}")
    return build(run)
