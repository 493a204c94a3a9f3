"""One cell of the matrix: a technique on a workload, what it cost and what it kept.

A cell is ``ok`` (measured), ``skipped`` (cannot run here: the technique does not
apply, its engine is missing, or the configuration leaves it out) or ``failed``
(it raised); the last two carry their ``reason``. Ratios against plaintext are
filled in by :func:`add_ratios` from the plaintext cell of the same workload in
the same run, never from stored numbers.

>>> plain = Cell("dot-64", "plaintext", seconds_median=0.001, accuracy=1.0)
>>> ckks = Cell("dot-64", "ckks-batched", seconds_median=0.5, accuracy=0.99)
>>> add_ratios([plain, ckks])
>>> ckks.overhead, round(ckks.accuracy_delta, 2)
(500.0, -0.01)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COLUMNS", "FAILED", "OK", "SKIPPED", "Cell", "add_ratios", "finite_json"]

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class Cell:
    """What one technique cost and kept on one workload (``None``: does not apply)."""

    workload: str
    technique: str
    #: a variant of the technique (an epsilon, a federated mode); "" for the only one
    setting: str = ""
    status: str = OK
    reason: str = ""
    #: samples (rows) the timed work processes
    rows: int | None = None
    repeats: int = 0
    seconds_median: float | None = None
    seconds_min: float | None = None
    seconds_max: float | None = None
    #: samples per second at the median time
    throughput: float | None = None
    #: one-off work outside the timed runs: keys, compilation, training a DP model,
    #: starting party processes
    setup_seconds: float | None = None
    #: peak resident memory above the start of a timed run (largest party under MPC)
    peak_memory_bytes: int | None = None
    #: bytes this technique puts on the network for the work: ciphertexts (HE), the
    #: largest party's online bytes (MPC), a client's updates (federated), the raw
    #: arrays a client would send (plaintext, DP)
    wire_bytes: int | None = None
    #: rounds of communication of the largest party (MPC); federated rounds
    rounds: int | None = None
    #: MPC: bytes exchanged with the dealer (triples), apart from the online bytes
    offline_bytes: int | None = None
    #: HE: the serialised input and output ciphertexts, and the public key set (one-off)
    ciphertext_bytes: int | None = None
    key_bytes: int | None = None
    #: task accuracy (test accuracy for models; ``None`` for dot products)
    accuracy: float | None = None
    #: share of predictions equal to the plaintext cell's, on the same samples
    agreement: float | None = None
    #: largest ``|output - plaintext output|`` on the same samples
    error: float | None = None
    #: what protects the data, in words, and the DP epsilon where there is one
    privacy: str = ""
    epsilon: float | None = None
    #: filled by add_ratios: this cell against the plaintext cell of the same run
    overhead: float | None = None
    wire_ratio: float | None = None
    accuracy_delta: float | None = None
    notes: str = ""
    #: medians of the phases of a run (encrypt, compute, decrypt...), in seconds
    phases: dict[str, float] = field(default_factory=dict)
    #: per-party (MPC) or other structured details; JSON only
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``technique`` or ``technique[setting]``: the column this cell belongs to."""
        return f"{self.technique}[{self.setting}]" if self.setting else self.technique

    def as_dict(self) -> dict[str, Any]:
        return {name: finite_json(value) for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: the flat columns of results.csv (phases and details go to results.json only)
COLUMNS = [f.name for f in dataclasses.fields(Cell) if f.name not in ("phases", "details")]


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and tuples as lists (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def add_ratios(cells: Iterable[Cell]) -> None:
    """Set overhead, wire ratio and accuracy change against each workload's plaintext cell."""
    cells = list(cells)
    baseline = {c.workload: c for c in cells if c.technique == "plaintext" and c.status == OK}
    for cell in cells:
        plain = baseline.get(cell.workload)
        if plain is None or cell.status != OK:
            continue
        cell.overhead = _ratio(cell.seconds_median, plain.seconds_median)
        cell.wire_ratio = _ratio(cell.wire_bytes, plain.wire_bytes)
        if cell.accuracy is not None and plain.accuracy is not None:
            cell.accuracy_delta = cell.accuracy - plain.accuracy


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return float(value) / float(base)
