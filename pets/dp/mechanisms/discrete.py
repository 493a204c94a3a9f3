"""Discrete Laplace and discrete Gaussian: exact integer noise for counts and other integers."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp import _sampling, _splitting
from pets.dp._imports import require_opendp
from pets.dp._validation import (
    as_array,
    check_delta,
    check_epsilon,
    check_noise_scale,
    check_released,
    check_sensitivity,
)
from pets.dp.mechanisms.base import AdditiveMechanism, Event, as_shape, register_mechanism
from pets.errors import DPConfigurationError

__all__ = ["DiscreteGaussianMechanism", "DiscreteLaplaceMechanism"]


MAX_INTEGER = 2**62
"""Largest magnitude of an input integer: ``x + noise`` must stay inside int64."""

MAX_INTEGER_SCALE = float(2**56)
"""Largest discrete noise scale: noise past ``2**62`` then has probability below ``e**-64``."""


def _as_integers(x: Any) -> npt.NDArray[np.int64]:
    values = as_array(x)
    integral = values.dtype.kind in "biu" or (
        values.dtype.kind == "f"
        and bool(np.all(np.isfinite(values)))
        and bool(np.all(values == np.round(values)))
    )
    if not integral:
        raise DPConfigurationError(
            "discrete mechanisms need integer values (counts, histograms), got "
            f"dtype {values.dtype}. Fix: round the values yourself, or use "
            "pets.dp.laplace / pets.dp.gaussian for real numbers."
        )
    if values.size and values.dtype.kind != "b":
        # compare in the input's own type (uint64 and float inputs may exceed int64)
        low, high = values.min(), values.max()
        if high > MAX_INTEGER or (values.dtype.kind != "u" and low < -MAX_INTEGER):
            raise DPConfigurationError(
                f"discrete mechanisms take integers within +-2**62 ({MAX_INTEGER:.3g}), so that "
                "the noisy result fits in 64 bits; these values reach beyond it. Fix: clip the "
                "counts to a public bound (pets.dp.clip_values) before adding noise."
            )
    return values.astype(np.int64)


def _check_integer_sensitivity(sensitivity: float, *, norm: str, integral: bool) -> float:
    """Integer data moves by whole units: a sensitivity below 1 (or, in L1, a fraction) is wrong."""
    if sensitivity < 1.0 or (integral and not sensitivity.is_integer()):
        bound = math.ceil(sensitivity)
        raise DPConfigurationError(
            f"sensitivity={sensitivity!r} cannot bound a change of integer data: one person "
            f"changes integers by whole units, so the {norm} sensitivity is "
            f"{'a whole number ' if integral else ''}>= 1. Calibrating to {sensitivity!r} "
            f"would add too little noise. Fix: pass sensitivity={max(1, bound)} (the most one "
            "person can change the counts)."
        )
    return sensitivity


_CALIBRATION_FIX = (
    "use an epsilon between 1e-6 and 1e3 and a delta between 1e-300 and 0.1, or "
    "pets.dp.laplace / pets.dp.gaussian for real numbers"
)


@lru_cache(maxsize=256)
def _certified_laplace_scale(epsilon: float, sensitivity: float) -> float:
    """The smallest float scale >= sensitivity/epsilon whose OpenDP map is <= epsilon."""
    scale = check_noise_scale(
        sensitivity / epsilon, limit=MAX_INTEGER_SCALE, what="discrete Laplace"
    )

    def certified() -> float:
        nonlocal scale
        while float(_sampling.int_measurement("laplace", scale).map(sensitivity)) > epsilon:
            scale = math.nextafter(scale, math.inf)
        return scale

    what = f"calibrate discrete Laplace noise for epsilon={epsilon!r}"
    return float(_sampling.guarded(certified, what=what, fix=_CALIBRATION_FIX))


@lru_cache(maxsize=256)
def _certified_gaussian_scale(epsilon: float, delta: float, sensitivity: float) -> float:
    """Sigma found by OpenDP's binary search over its own zCDP -> (epsilon, delta) conversion."""
    dp = require_opendp()
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T=float)

    def make(scale: float) -> Any:
        return dp.c.make_fix_delta(
            dp.c.make_zCDP_to_approxDP(dp.m.make_gaussian(*space, scale=scale)), delta
        )

    what = f"calibrate discrete Gaussian noise for epsilon={epsilon!r}, delta={delta!r}"
    scale = _sampling.guarded(
        lambda: float(dp.binary_search_param(make, d_in=sensitivity, d_out=(epsilon, delta))),
        what=what,
        fix=_CALIBRATION_FIX,
    )
    return check_noise_scale(scale, limit=MAX_INTEGER_SCALE, what="discrete Gaussian")


@register_mechanism("discrete_laplace")
class DiscreteLaplaceMechanism(AdditiveMechanism):
    """Adds discrete Laplace noise (P[z] ~ exp(-|z|/b), b = sensitivity/epsilon) to integers.

    Pure epsilon-DP for integer vectors whose L1 sensitivity is ``sensitivity``
    (a whole number >= 1: integer data moves by whole units). Inputs must lie
    within +-2**62 so that the noisy result fits in 64 bits.
    Sampled exactly by OpenDP's ``make_laplace`` over an ``i64`` vector domain
    (Canonne, Kamath & Steinke 2020 sampler, OS CSPRNG); ``b`` is nudged up by
    float ulps until OpenDP's own privacy map certifies ``epsilon``.

    >>> import pets.dp
    >>> counts = pets.dp.DiscreteLaplaceMechanism(epsilon=1.0, sensitivity=1)([10, 20, 30])
    >>> counts.dtype.kind
    'i'
    """

    def __init__(self, epsilon: float, sensitivity: float = 1.0) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._sensitivity = _check_integer_sensitivity(
            check_sensitivity(sensitivity), norm="L1", integral=True
        )
        self._scale = _certified_laplace_scale(self._epsilon, self._sensitivity)

    @property
    def std(self) -> float:
        """Exact: variance of the discrete Laplace is 2 q / (1 - q)^2 with q = exp(-1/b)."""
        q = math.exp(-1.0 / self._scale)
        return math.sqrt(2.0 * q) / (1.0 - q)

    def __call__(self, x: Any) -> npt.NDArray[np.int64]:
        noisy = _sampling.sample_int("laplace", _as_integers(x), scale=self._scale)
        return check_released(noisy, what="integers")

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.int64]:
        return self(np.zeros(as_shape(shape), dtype=np.int64))

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[np.int64]:
        """A difference of two ``NegativeBinomial(1/parts)``: ``parts`` of them sum exactly."""
        return _splitting.negative_binomial_difference(
            as_shape(shape), scale=self._scale, parts=parts
        )

    def dp_event(self) -> Event:
        return {
            "type": "discrete_laplace",
            "noise_parameter": 1.0 / self._scale,
            "sensitivity": int(self._sensitivity),
        }

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "sensitivity": self._sensitivity}


@register_mechanism("discrete_gaussian")
class DiscreteGaussianMechanism(AdditiveMechanism):
    """Adds discrete Gaussian noise to integers, calibrated for ``(epsilon, delta)``-DP.

    Sigma is found by OpenDP (``binary_search_param`` over ``make_gaussian`` on
    an ``i64`` vector domain, converted from zCDP with ``make_zCDP_to_approxDP``),
    so OpenDP certifies the promise end to end; it is a few percent larger than
    the continuous analytic calibration. ``sensitivity`` is an L2 bound (>= 1:
    integer data moves by whole units).

    >>> import pets.dp
    >>> mechanism = pets.dp.DiscreteGaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1)
    >>> mechanism([0, 0]).shape
    (2,)
    """

    def __init__(self, epsilon: float, delta: float, sensitivity: float = 1.0) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._delta = check_delta(delta, allow_zero=False)
        self._sensitivity = _check_integer_sensitivity(
            check_sensitivity(sensitivity), norm="L2", integral=False
        )
        self._scale = _certified_gaussian_scale(self._epsilon, self._delta, self._sensitivity)

    def __call__(self, x: Any) -> npt.NDArray[np.int64]:
        noisy = _sampling.sample_int("gaussian", _as_integers(x), scale=self._scale)
        return check_released(noisy, what="integers")

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.int64]:
        return self(np.zeros(as_shape(shape), dtype=np.int64))

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[np.int64]:
        """A discrete Gaussian of ``sigma / sqrt(parts)``; ``parts`` of them sum to nearly sigma.

        The sum is within a negligible distance of the discrete Gaussian of sigma
        only while each share's sigma is at least 1 (Kairouz, Liu & Steinke 2021);
        below that the shares are refused.
        """
        share = self._scale / math.sqrt(_splitting.check_parts(parts))
        if parts > 1 and share < 1.0:
            raise DPConfigurationError(
                f"discrete Gaussian noise of sigma {self._scale:.3g} split into {parts} shares "
                f"gives each a sigma of {share:.3g}, below 1, where their sum is no longer a "
                "discrete Gaussian. Fix: use a smaller epsilon, fewer parties, or "
                "DiscreteLaplaceMechanism (which splits exactly)."
            )
        zeros = np.zeros(as_shape(shape), dtype=np.int64)
        return _sampling.sample_int("gaussian", zeros, scale=share)

    def dp_event(self) -> Event:
        # rho-zCDP with rho = sensitivity^2 / (2 sigma^2) (Canonne, Kamath & Steinke 2020, Thm 4).
        return {"type": "zcdp", "rho": self._sensitivity**2 / (2.0 * self._scale**2)}

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "delta": self._delta, "sensitivity": self._sensitivity}
