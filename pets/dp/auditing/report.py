"""The result of an audit: one row per attack, and the strongest evidence across them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AttackResult", "AuditReport"]


@dataclass(frozen=True)
class AttackResult:
    """What one attack achieved against the model."""

    attack: str
    auc: float
    tpr_at_fpr: dict[float, float]
    epsilon_lower_bound: float
    epsilon_estimate: float
    epsilon_interval: tuple[float, float]
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: FPR keys as strings, a NaN threshold as ``None``."""
        return {
            "attack": self.attack,
            "auc": self.auc,
            "tpr_at_fpr": {f"{f:g}": tpr for f, tpr in self.tpr_at_fpr.items()},
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "epsilon_estimate": self.epsilon_estimate,
            "epsilon_interval": list(self.epsilon_interval),
            "threshold": None if math.isnan(self.threshold) else self.threshold,
        }


@dataclass(frozen=True)
class AuditReport:
    """Membership-inference audit of one model.

    ``auc``, ``tpr_at_fpr`` and ``epsilon_lower_bound`` report the strongest
    attack. ``epsilon_lower_bound`` holds with probability ``confidence``
    (across all attacks: each one is run at ``1 - (1 - confidence) / len(attacks)``).
    An accounted epsilon below it means the DP claim is wrong or broken; a bound
    far below the accounted epsilon is expected (attacks are not optimal).
    """

    results: dict[str, AttackResult]
    confidence: float
    delta: float
    n_members: int
    n_non_members: int
    notes: tuple[str, ...] = field(default=())

    @property
    def strongest(self) -> AttackResult:
        """The attack with the highest epsilon lower bound (ties: highest AUC)."""
        return max(self.results.values(), key=lambda r: (r.epsilon_lower_bound, r.auc))

    @property
    def auc(self) -> float:
        return max(r.auc for r in self.results.values())

    @property
    def tpr_at_fpr(self) -> dict[float, float]:
        fprs = next(iter(self.results.values())).tpr_at_fpr
        return {f: max(r.tpr_at_fpr[f] for r in self.results.values()) for f in fprs}

    @property
    def epsilon_lower_bound(self) -> float:
        return self.strongest.epsilon_lower_bound

    @property
    def epsilon_interval(self) -> tuple[float, float]:
        return self.strongest.epsilon_interval

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: every attack's row and the strongest evidence."""
        return {
            "attack": "membership_inference",
            "results": {name: r.to_dict() for name, r in self.results.items()},
            "strongest": self.strongest.attack,
            "auc": self.auc,
            "tpr_at_fpr": {f"{f:g}": tpr for f, tpr in self.tpr_at_fpr.items()},
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "confidence": self.confidence,
            "delta": self.delta,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        fprs = list(next(iter(self.results.values())).tpr_at_fpr)
        head = [
            "attack",
            "AUC",
            *[f"TPR@{f:g}FPR" for f in fprs],
            "eps lower bound",
            "eps interval",
        ]
        rows = [
            [
                r.attack,
                f"{r.auc:.3f}",
                *[f"{r.tpr_at_fpr[f]:.3f}" for f in fprs],
                f"{r.epsilon_lower_bound:.3f}",
                f"[{r.epsilon_interval[0]:.2f}, {r.epsilon_interval[1]:.2f}]",
            ]
            for r in self.results.values()
        ]
        widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

        title = (
            f"membership-inference audit: {self.n_members} members, {self.n_non_members} "
            f"non-members, {self.confidence:.0%} confidence, delta={self.delta:g}"
        )
        best = self.strongest
        lines = [title, line(head), line(["-" * w for w in widths]), *map(line, rows)]
        lines.append(f"strongest: epsilon >= {best.epsilon_lower_bound:.3f} ({best.attack})")
        lines.extend(self.notes)
        return "\n".join(lines)
