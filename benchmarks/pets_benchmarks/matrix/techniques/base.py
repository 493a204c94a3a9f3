"""What a technique is to the matrix: a column that turns workloads into cells.

A technique says why it cannot run at all (:meth:`Technique.missing`: its engine is
not installed) or on one workload (:meth:`Technique.reason`), and otherwise
runs its workloads and yields one :class:`~pets_benchmarks.matrix.cells.Cell`
each (several for techniques with settings, e.g. DP-SGD at several epsilons).
Techniques register themselves by key with :func:`register`; the runner asks
the registry, so adding a column is one module.
"""

from __future__ import annotations

import importlib.util
import logging
import traceback
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pets
from pets_benchmarks.matrix.cells import FAILED, SKIPPED, Cell
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.workloads import INFERENCE, TRAINING, Workload, predictions

__all__ = [
    "Context", "Technique", "compare_outputs", "failed", "guard", "missing_backend",
    "missing_module", "register",
    "registered", "skipped",
]

_log = logging.getLogger("pets_benchmarks.matrix")


@dataclass
class Context:
    """What every technique of one run shares: the configuration and plaintext's outputs."""

    config: MatrixConfig
    #: plaintext outputs per workload key (the reference every other cell is compared to)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    #: reports progress inside a long technique run (the runner shows it)
    say: Callable[[str], None] = lambda message: None
    #: set-up shared between columns (e.g. one CKKS key set for both packings)
    cache: dict[Any, Any] = field(default_factory=dict)


class Technique(ABC):
    """One column of the matrix."""

    #: short key (``results.csv``'s ``technique``) and the column title
    key: str = "?"
    label: str = "?"
    #: what protects the data under this technique, in words
    privacy: str = ""
    #: the registry key it was made under (``mpc`` for ``mpc-2``), set by the registry
    family: str = ""

    def missing(self) -> str | None:
        """Why this technique cannot run on this machine at all (``None``: it can)."""
        return None

    def reason(self, workload: Workload, config: MatrixConfig) -> str | None:
        """Why this technique does not apply to ``workload`` (``None``: it does)."""
        return None

    @abstractmethod
    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        """Run every workload (all applicable) and yield their cells as they finish."""

    def cell(self, workload: Workload, **values: Any) -> Cell:
        """A cell of this technique on ``workload``, with its privacy description."""
        values.setdefault("privacy", self.privacy)
        values.setdefault("rows", workload.rows or None)
        return Cell(workload.key, self.key, **values)


Factory = Callable[[MatrixConfig], list[Technique]]
_REGISTRY: dict[str, Factory] = {}


def register(key: str) -> Callable[[Factory], Factory]:
    """Register a factory that makes the technique(s) ``key`` for a configuration."""

    def decorate(factory: Factory) -> Factory:
        _REGISTRY[key] = factory
        return factory

    return decorate


def registered() -> dict[str, Factory]:
    """The registered technique factories, in column order."""
    return dict(_REGISTRY)


def missing_backend(name: str) -> str | None:
    """The install hint when backend ``name``'s engine cannot be imported."""
    try:
        pets.registry.backend_class(name)
    except pets.BackendNotInstalledError as exc:
        return str(exc)
    return None


def missing_module(module: str, extra: str) -> str | None:
    """A reason naming the install command when ``module`` cannot be found."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed; install it with: pip install 'pets[{extra}]'"
    return None


def skipped(technique: Technique, workload: Workload, reason: str, setting: str = "") -> Cell:
    return technique.cell(workload, setting=setting, status=SKIPPED, reason=reason)


def failed(technique: Technique, workload: Workload, exc: BaseException,
           setting: str = "") -> Cell:
    """A cell for a run that raised: a pets error's message names its fix; anything else
    is logged with its traceback."""
    if not isinstance(exc, pets.PetsError):
        _log.warning("%s on %s raised:\n%s", technique.key, workload.key,
                     "".join(traceback.format_exception(exc)))
    reason = f"{type(exc).__name__}: {exc}"
    return technique.cell(workload, setting=setting, status=FAILED, reason=reason)


def guard(technique: Technique, workload: Workload, run: Callable[[], Cell],
          setting: str = "") -> Cell:
    """``run()``, or a failed cell carrying the error if it raised. Warnings that pets
    raises meanwhile (an approximation off by much, inputs beyond a calibrated range) go
    into the cell's notes; other libraries' warnings go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cell = run()
        except Exception as exc:
            cell = failed(technique, workload, exc, setting=setting)
    seen: list[str] = []
    for warning in caught:
        text = f"{warning.category.__name__}: {warning.message}"
        if warning.category.__module__.split(".")[0] != "pets":
            _log.debug("%s on %s warned: %s", technique.key, workload.key, text)
        elif text not in seen:
            seen.append(text)
    if seen:
        cell.notes = "; ".join(filter(None, [cell.notes, *("pets warned " + t for t in seen)]))
    return cell


def compare_outputs(cell: Cell, workload: Workload, outputs: Any,
                    reference: np.ndarray | None) -> Cell:
    """Set the cell's error against plaintext and, for models, accuracy and agreement."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64).reshape(outputs.shape)
        cell.error = float(np.abs(outputs - reference).max())
    if workload.kind in (INFERENCE, TRAINING) and workload.labels is not None:
        predicted = predictions(workload.arch, outputs)
        cell.accuracy = float((predicted == workload.labels).mean())
        if reference is not None:
            cell.agreement = float((predicted == predictions(workload.arch, reference)).mean())
    return cell
