"""The Gaussian mechanism: (epsilon, delta)-DP noise for real values with bounded L2 sensitivity."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp import _sampling, _splitting
from pets.dp._imports import require
from pets.dp._validation import (
    MAX_FLOAT_SCALE,
    as_array,
    check_delta,
    check_epsilon,
    check_finite,
    check_noise_scale,
    check_positive,
    check_released,
    check_sensitivity,
)
from pets.dp.mechanisms.base import AdditiveMechanism, Event, as_shape, register_mechanism
from pets.errors import DPConfigurationError

__all__ = ["GaussianMechanism", "gaussian_sigma"]

_FLOAT_MARGIN = 1.0 + 1e-9  # above brentq's tolerance in the analytic calibration
_WIDENING = 1.0 + 1e-6  # step when that margin is not enough (tiny epsilon)
_MAX_WIDENINGS = 10_000


def _classic_sigma(epsilon: float, delta: float) -> float:
    if epsilon >= 1.0:
        raise DPConfigurationError(
            f"calibration='classic' is only valid for epsilon < 1, got epsilon={epsilon!r}. "
            "Fix: use calibration='analytic' (Balle & Wang 2018), valid for every epsilon."
        )
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


@lru_cache(maxsize=256)
def _analytic_sigma(epsilon: float, delta: float) -> float:
    gaussian_mechanism = require(
        "dp_accounting.gaussian_mechanism", purpose="the analytic Gaussian calibration"
    )
    with warnings.catch_warnings():  # log1p(-1) = -inf at the far ends is expected there
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            sigma = float(gaussian_mechanism.get_sigma_gaussian(epsilon, delta)) * _FLOAT_MARGIN
        except (ValueError, ArithmeticError) as exc:
            raise DPConfigurationError(
                f"the analytic Gaussian calibration fails at epsilon={epsilon!r}, "
                f"delta={delta!r}: {exc}. Fix: use an epsilon between 1e-6 and 1e3 and a "
                "delta between 1e-300 and 0.1."
            ) from exc
        achieved = math.inf
        # brentq stops at an absolute tolerance, which is coarse for a tiny epsilon:
        # widen sigma until dp_accounting's own epsilon for it certifies the promise.
        for _ in range(_MAX_WIDENINGS):
            achieved = float(gaussian_mechanism.get_epsilon_gaussian(sigma, delta))
            if math.isfinite(sigma) and achieved <= epsilon:
                return sigma
            sigma *= _WIDENING
    raise DPConfigurationError(
        f"the analytic Gaussian calibration found no sigma certifying epsilon={epsilon!r} "
        f"at delta={delta!r} (last: sigma={sigma!r} with epsilon={achieved!r}). "
        "Fix: use an epsilon between 1e-6 and 1e3 and a delta between 1e-300 and 0.1."
    )


_CALIBRATIONS: dict[str, Callable[[float, float], float]] = {
    "analytic": _analytic_sigma,
    "classic": _classic_sigma,
}


def gaussian_sigma(epsilon: float, delta: float, *, calibration: str = "analytic") -> float:
    """Noise standard deviation per unit of L2 sensitivity for ``(epsilon, delta)``-DP.

    ``"analytic"`` is the exact calibration of Balle & Wang (2018), taken from
    ``dp_accounting.gaussian_mechanism``; ``"classic"`` is
    ``sqrt(2 ln(1.25/delta)) / epsilon`` (Dwork & Roth), valid for epsilon < 1.

    >>> import pets.dp
    >>> round(pets.dp.gaussian_sigma(1.0, 1e-5), 3)
    3.731
    """
    epsilon = check_epsilon(epsilon)
    delta = check_delta(delta, allow_zero=False)
    try:
        calibrate = _CALIBRATIONS[calibration]
    except KeyError:
        raise DPConfigurationError(
            f"unknown calibration {calibration!r}. "
            f"Fix: use one of {', '.join(sorted(_CALIBRATIONS))}."
        ) from None
    return calibrate(epsilon, delta)


@register_mechanism("gaussian")
class GaussianMechanism(AdditiveMechanism):
    """Adds N(0, sigma^2) noise to each value, calibrated for ``(epsilon, delta)``-DP.

    ``sensitivity`` bounds the L2 norm of the change one person can make to the
    whole input vector. Noise comes from OpenDP's ``make_gaussian`` over a float
    vector domain (exact discrete Gaussian on a ``2**k`` grid, OS CSPRNG, per
    Canonne, Kamath & Steinke 2020); sigma is widened by a relative
    ``sqrt(n) * 2**k / sensitivity`` to pay for rounding the input to the grid.

    >>> import pets.dp
    >>> mechanism = pets.dp.GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1.0)
    >>> round(mechanism.scale, 3)
    3.731
    """

    def __init__(
        self,
        epsilon: float,
        delta: float,
        sensitivity: float = 1.0,
        *,
        calibration: str = "analytic",
    ) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._delta = check_delta(delta, allow_zero=False)
        self._sensitivity = check_sensitivity(sensitivity)
        self.calibration = calibration
        self._sigma = gaussian_sigma(self._epsilon, self._delta, calibration=calibration)
        self._scale = self._sigma * self._sensitivity  # the noise standard deviation
        check_noise_scale(self._scale, limit=MAX_FLOAT_SCALE, what="Gaussian")

    @classmethod
    def from_noise_multiplier(
        cls, noise_multiplier: float, *, delta: float, sensitivity: float = 1.0
    ) -> GaussianMechanism:
        """The mechanism adding ``N(0, (noise_multiplier * sensitivity)^2)`` (DP-SGD's noise).

        Its epsilon is what that noise buys at ``delta`` for one use (the analytic
        bound of Balle & Wang 2018, from dp-accounting); an accountant composing
        many steps uses :meth:`dp_event`.

        >>> import pets.dp
        >>> mechanism = pets.dp.GaussianMechanism.from_noise_multiplier(1.1, delta=1e-5)
        >>> (mechanism.scale, round(mechanism.epsilon, 2))
        (1.1, 3.92)
        """
        gaussian_mechanism = require(
            "dp_accounting.gaussian_mechanism", purpose="the Gaussian mechanism's epsilon"
        )
        multiplier = check_positive(
            noise_multiplier, name="noise_multiplier",
            fix="pass the noise standard deviation per unit of sensitivity (e.g. 1.1).",
        )
        delta = check_delta(delta, allow_zero=False)
        epsilon = float(gaussian_mechanism.get_epsilon_gaussian(multiplier, delta))
        mechanism = cls.__new__(cls)
        mechanism._epsilon = epsilon
        mechanism._delta = delta
        mechanism._sensitivity = check_sensitivity(sensitivity)
        mechanism.calibration = "noise_multiplier"
        mechanism._sigma = multiplier
        mechanism._scale = multiplier * mechanism._sensitivity
        check_noise_scale(mechanism._scale, limit=MAX_FLOAT_SCALE, what="Gaussian")
        return mechanism

    def sampling_parameters(self, size: int) -> tuple[float, int]:
        """``(sigma, k)`` given to OpenDP for ``size`` values, rounding paid for."""
        k = _sampling.grid_exponent(self.scale, self._sensitivity)
        widened = self._sensitivity + math.sqrt(size) * 2.0**k
        return self._sigma * widened, k

    def __call__(self, x: Any) -> npt.NDArray[np.float64]:
        values = as_array(x).astype(np.float64, copy=False)
        check_finite(values)
        scale, k = self.sampling_parameters(values.size)
        noisy = _sampling.sample_float("gaussian", values, scale=scale, k=k)
        return check_released(noisy, what="values")

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.float64]:
        return self(np.zeros(as_shape(shape)))

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[np.float64]:
        """``N(0, sigma^2 / parts)`` (OpenDP): ``parts`` of them sum to ``N(0, sigma^2)``."""
        shape = as_shape(shape)
        size = math.prod(shape)
        scale, k = self.sampling_parameters(size)
        share = scale / math.sqrt(_splitting.check_parts(parts))
        return _sampling.sample_float("gaussian", np.zeros(shape), scale=share, k=k)

    def dp_event(self) -> Event:
        return {"type": "gaussian", "noise_multiplier": self._sigma}

    def _describe(self) -> dict[str, Any]:
        return {
            "epsilon": self._epsilon,
            "delta": self._delta,
            "sensitivity": self._sensitivity,
            "calibration": self.calibration,
        }
