"""The assessment matrix's data: a cell is (stage, threat, technique), its leakage and its cost.

A cell's ``status`` says how to read it:

``measured``        an attack ran against this technique; ``leakage`` holds its metric, the
                    confidence interval and the advantage over chance (0 = the attacker learns
                    nothing beyond a guess, 1 = everything the metric can show).
``impossible``      the attacker's view holds nothing the attack could use (a server that holds
                    only ciphertexts, a party that holds only random shares); ``evidence`` says
                    what it held, measured in the same run.
``not applicable``  the technique does not address this threat; ``note`` says why and where
                    the threat is measured instead.
``skipped``         left out of this configuration; ``note`` says why.
``failed``          the step raised; ``note`` holds the error, and the rest of the run went on.

>>> leak = Leakage("AUC", 0.62, (0.57, 0.66), chance=0.5, advantage=0.24)
>>> cell = Cell("release", "membership", "none", "measured", leakage=leak)
>>> Cell.from_dict(cell.to_dict()) == cell
True
>>> cell.advantage
0.24
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "STATUSES",
    "Cell",
    "Cost",
    "Leakage",
    "advantage_over_chance",
    "json_safe",
]

STATUSES = ("measured", "impossible", "not applicable", "skipped", "failed")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as strings and tuples as lists (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def advantage_over_chance(value: float, chance: float) -> float:
    """How far ``value`` is from ``chance`` towards 1, clipped to [0, 1]: ``(v - c) / (1 - c)``.

    >>> advantage_over_chance(0.75, 0.5), advantage_over_chance(0.05, 0.1)
    (0.5, 0.0)
    """
    if chance >= 1.0:
        return 0.0
    return float(min(1.0, max(0.0, (value - chance) / (1.0 - chance))))


@dataclass(frozen=True)
class Leakage:
    """What the attack achieved: ``value`` of ``metric`` with its ``interval``.

    ``chance`` is the value of a guess; ``advantage`` maps ``value`` onto [0, 1] against it
    (the heat map's colour). ``details`` holds the attack's other numbers.
    """

    metric: str
    value: float
    interval: tuple[float, float] | None
    chance: float
    advantage: float
    details: dict[str, Any] = field(default_factory=dict)

    def short(self) -> str:
        """``AUC 0.62 [0.57, 0.66]``."""
        text = f"{self.metric} {_number(self.value)}"
        if self.interval is not None:
            text += f" [{_number(self.interval[0])}, {_number(self.interval[1])}]"
        return text


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


@dataclass(frozen=True)
class Cost:
    """What the technique cost on the stage's work, against plaintext on the same work.

    ``seconds`` is the protected work's wall time and ``plain_seconds`` the plaintext
    work's; ``bytes`` what travelled (or was held) and ``plain_bytes`` the plaintext's;
    ``accuracy`` the result's test accuracy and ``plain_accuracy`` plaintext's. ``None``
    where a measure does not apply; ``details`` holds the rest (rounds, keys, epsilon).
    """

    work: str
    seconds: float | None = None
    plain_seconds: float | None = None
    bytes: float | None = None
    plain_bytes: float | None = None
    accuracy: float | None = None
    plain_accuracy: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def time_ratio(self) -> float | None:
        return _ratio(self.seconds, self.plain_seconds)

    @property
    def bytes_ratio(self) -> float | None:
        return _ratio(self.bytes, self.plain_bytes)

    def short(self) -> str:
        """``2.1 s (35x), 1.2 MiB (8x), accuracy 0.85 vs 0.95``."""
        parts = []
        if self.seconds is not None:
            parts.append(f"{self.seconds:.2g} s" + _times(self.time_ratio))
        if self.bytes is not None:
            parts.append(_size(self.bytes) + _times(self.bytes_ratio))
        if self.accuracy is not None:
            against = (f" vs {self.plain_accuracy:.2f}"
                       if self.plain_accuracy is not None else "")
            parts.append(f"accuracy {self.accuracy:.2f}{against}")
        return ", ".join(parts) or "-"


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def _times(ratio: float | None) -> str:
    """`` (35x)``, `` (1,200x)``, `` (0.42x)``, or nothing without a ratio."""
    if ratio is None:
        return ""
    return f" ({ratio:,.0f}x)" if ratio >= 100 else f" ({ratio:.3g}x)"


def _size(count: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


@dataclass(frozen=True)
class Cell:
    """One (stage, threat, technique) of the matrix; see the module docstring for ``status``."""

    stage: str
    threat: str
    technique: str
    status: str
    leakage: Leakage | None = None
    cost: Cost | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def advantage(self) -> float | None:
        """The heat map's value: the attack's advantage, 0 where impossible, else ``None``."""
        if self.status == "measured" and self.leakage is not None:
            return self.leakage.advantage
        if self.status == "impossible":
            return 0.0
        return None

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-safe dictionary (see :meth:`from_dict`)."""
        data = asdict(self)
        if self.cost is not None:
            data["cost"]["time_ratio"] = self.cost.time_ratio
            data["cost"]["bytes_ratio"] = self.cost.bytes_ratio
        data["advantage"] = self.advantage
        return json_safe(data)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        leakage = data.get("leakage")
        cost = data.get("cost")
        return cls(
            stage=data["stage"], threat=data["threat"], technique=data["technique"],
            status=data["status"],
            leakage=None if leakage is None else Leakage(
                metric=leakage["metric"], value=float(leakage["value"]),
                interval=None if leakage["interval"] is None else (
                    float(leakage["interval"][0]), float(leakage["interval"][1])),
                chance=float(leakage["chance"]), advantage=float(leakage["advantage"]),
                details=dict(leakage.get("details") or {}),
            ),
            cost=None if cost is None else Cost(**{
                k: v for k, v in cost.items() if k not in ("time_ratio", "bytes_ratio")
            }),
            evidence=dict(data.get("evidence") or {}),
            note=data.get("note", ""),
        )
