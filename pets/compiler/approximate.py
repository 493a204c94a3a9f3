"""Polynomial stand-ins for activations HE cannot compute, fitted over a range.

Each activation is replaced by the least-squares polynomial through Chebyshev
nodes of its input range (declared, or calibrated on the example input and
widened by a margin). Default degrees: 4 for ReLU-like functions (ReLU, GELU,
SiLU, ...: dominated by the even ``|x|`` part, so the degree-4 term matters) and
3 for the odd sigmoid/tanh. With :mod:`pets.polynomial` degree 3 costs 2
levels (``(c x) * x^2``) and degree 4 costs 3 (``x^4`` takes 2, its coefficient 1).

>>> import numpy as np
>>> fit = fit_polynomial(np.tanh, (-2.0, 2.0), 3)
>>> round(max_error(np.tanh, fit, (-2.0, 2.0)), 3)
0.053
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import Chebyshev
from numpy.polynomial import polynomial as power_basis

__all__ = [
    "DEFAULT_DEGREES",
    "Approximation",
    "calibrated_interval",
    "fit_polynomial",
    "lipschitz",
    "max_error",
]

ElementFunction = Callable[[np.ndarray], np.ndarray]

#: degree used for each activation unless ``degree=``/``degrees=`` says otherwise
DEFAULT_DEGREES: Mapping[str, int] = {
    "relu": 4, "gelu": 4, "silu": 4, "softplus": 4, "leaky_relu": 4, "elu": 4, "relu6": 4,
    "hardtanh": 3, "hardswish": 4, "hardsigmoid": 3, "sigmoid": 3, "tanh": 3,
}
_GRID_POINTS = 4001


@dataclass(frozen=True)
class Approximation:
    """How one activation was replaced: the polynomial, its range and its error."""

    where: str
    function: str
    degree: int
    interval: tuple[float, float]
    #: ``"declared"`` (``ranges=``/``activation_range=``) or ``"calibrated"``
    interval_source: str
    coefficients: tuple[float, ...]
    #: max ``|p(x) - f(x)|`` over the interval
    max_error: float
    #: max ``|p(x) - f(x)|`` over the activation's inputs on the example input
    calibration_error: float
    #: fraction of the example's activation inputs outside the interval
    outside_fraction: float

    def __str__(self) -> str:
        lo, hi = self.interval
        return (
            f"{self.where}: {self.function} ~ degree-{self.degree} polynomial on "
            f"[{lo:.3g}, {hi:.3g}] ({self.interval_source}); max error {self.max_error:.2e} "
            f"on the range, {self.calibration_error:.2e} on the example input"
        )


def _grid(interval: tuple[float, float]) -> np.ndarray:
    return np.linspace(interval[0], interval[1], _GRID_POINTS)


def fit_polynomial(
    function: ElementFunction, interval: tuple[float, float], degree: int
) -> tuple[float, ...]:
    """Power-basis coefficients of the least-squares fit of ``function`` on ``interval``.

    Fitted in the Chebyshev basis at ``8 * (degree + 1)`` Chebyshev nodes (well
    conditioned, close to the minimax polynomial), then converted.
    """
    lo, hi = interval
    if not hi > lo:
        raise ValueError(f"an approximation range needs low < high, got {interval}")
    if degree < 1:
        raise ValueError(f"an approximating polynomial needs degree >= 1, got {degree}")
    count = 8 * (degree + 1)
    nodes = np.cos(np.pi * (np.arange(count) + 0.5) / count)
    x = lo + (nodes + 1.0) * (hi - lo) / 2.0
    series = Chebyshev.fit(x, function(x), degree, domain=[lo, hi])
    coefficients = series.convert(kind=np.polynomial.Polynomial).coef
    return tuple(float(c) for c in coefficients)


def max_error(
    function: ElementFunction, coefficients: Sequence[float], interval: tuple[float, float]
) -> float:
    """Largest ``|p(x) - f(x)|`` over ``interval`` (dense grid)."""
    x = _grid(interval)
    return float(np.max(np.abs(power_basis.polyval(x, coefficients) - function(x))))


def lipschitz(coefficients: Sequence[float], interval: tuple[float, float]) -> float:
    """Largest ``|p'(x)|`` over ``interval``: how much ``p`` amplifies an input error."""
    derivative = power_basis.polyder(np.asarray(coefficients, dtype=np.float64))
    return float(np.max(np.abs(power_basis.polyval(_grid(interval), derivative))))


def calibrated_interval(values: np.ndarray, margin: float) -> tuple[float, float]:
    """``[min, max]`` of ``values`` widened by ``margin`` of its width on each side."""
    lo, hi = float(np.min(values)), float(np.max(values))
    width = max(hi - lo, 1e-3 * max(1.0, abs(lo), abs(hi)))
    return lo - margin * width, hi + margin * width
