"""DP-SGD settings for joint training under MPC: ``model.fit(..., dp=pets.dp.SGD(...))``.

:class:`SGD` says what guarantee the released weights carry; ``fit`` does
the rest on secret shares (:mod:`pets.compiler.private_sgd`): Poisson-sampled
batches, per-example gradients clipped to ``max_grad_norm`` (their norms and
inverse square roots computed on shares), Gaussian noise drawn jointly by the
parties (:func:`pets.dp.joint_noise`, so no party knows it), and the
accounting of :func:`pets.dp.make_private` (Opacus' accountant picks the noise
multiplier; the spend is charged to ``budget`` before the first step).

>>> import pets.dp
>>> settings = pets.dp.SGD(epsilon=4.0, delta=1e-5, max_grad_norm=1.0, accountant="rdp")
>>> round(settings.noise_multiplier(sample_rate=0.1, epochs=5), 2)
1.23
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from pets.dp._imports import require
from pets.dp._validation import check_delta, check_epsilon, check_positive
from pets.dp.budget import Budget, LedgerEntry
from pets.dp.events import dp_sgd_event
from pets.errors import DPConfigurationError

__all__ = ["SGD"]


@dataclass(frozen=True)
class SGD:
    """DP-SGD under MPC: ``(epsilon, delta)`` for the released weights, clipping at
    ``max_grad_norm``, Opacus' ``accountant``; ``budget`` (each party's own) is charged.

    ``norm_interval`` bounds the squared per-example gradient norms for the
    inverse square root on shares (default: ``max_grad_norm^2 / 4`` to
    ``10^4 max_grad_norm^2``; a norm beyond the top is clipped less than it
    should be). ``colluding`` sizes the noise shares so that that many parties
    pooling theirs still face the whole noise (see :func:`pets.dp.joint_noise`).
    """

    epsilon: float
    delta: float
    max_grad_norm: float
    accountant: str = "prv"
    budget: Budget | None = None
    norm_interval: tuple[float, float] | None = None
    colluding: int = 0

    def __post_init__(self) -> None:
        check_epsilon(self.epsilon)
        check_delta(self.delta, allow_zero=False)
        check_positive(self.max_grad_norm, name="max_grad_norm",
                       fix="pass the largest L2 norm a per-example gradient may keep, e.g. 1.0")

    @property
    def interval(self) -> tuple[float, float]:
        """The range of squared per-example norms the clipping is accurate over."""
        if self.norm_interval is not None:
            return (float(self.norm_interval[0]), float(self.norm_interval[1]))
        bound = self.max_grad_norm**2
        return (bound / 4.0, bound * 1e4)

    def noise_multiplier(self, *, sample_rate: float, epochs: int) -> float:
        """The noise multiplier the accountant needs for ``(epsilon, delta)`` (as make_private)."""
        opacus = require("opacus", purpose="DP-SGD accounting")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Optimal order is the.*")
                return float(opacus.accountants.utils.get_noise_multiplier(
                    target_epsilon=self.epsilon, target_delta=self.delta,
                    sample_rate=sample_rate, epochs=epochs, accountant=self.accountant))
        except ValueError as exc:
            raise DPConfigurationError(
                f"no noise level reaches epsilon={self.epsilon} at delta={self.delta} in "
                f"{epochs} epoch(s): {exc}. Fix: raise epsilon or lower epochs."
            ) from exc

    def charge(self, *, noise_multiplier: float, sample_rate: float, steps: int,
               label: str) -> LedgerEntry | None:
        """Record the whole training's spend in ``budget`` (refused, nothing done, past it)."""
        if self.budget is None:
            return None
        return self.budget.spend_event(dp_sgd_event(noise_multiplier, sample_rate, steps),
                                       epsilon=self.epsilon, delta=self.delta, label=label)

    def describe(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "delta": self.delta,
                "max_grad_norm": self.max_grad_norm, "accountant": self.accountant}
