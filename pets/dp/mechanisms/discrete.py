"""Discrete Laplace and discrete Gaussian: exact integer noise for counts and other integers."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp import _sampling
from pets.dp._imports import require_opendp
from pets.dp._validation import as_array, check_delta, check_epsilon, check_sensitivity
from pets.dp.mechanisms.base import AdditiveMechanism, Event, as_shape, register_mechanism
from pets.errors import DPConfigurationError

__all__ = ["DiscreteGaussianMechanism", "DiscreteLaplaceMechanism"]


def _as_integers(x: Any) -> npt.NDArray[np.int64]:
    values = as_array(x)
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    if (
        values.dtype.kind == "f"
        and np.all(np.isfinite(values))
        and np.all(values == np.round(values))
    ):
        return values.astype(np.int64)
    raise DPConfigurationError(
        "discrete mechanisms need integer values (counts, histograms), got "
        f"dtype {values.dtype}. Fix: round the values yourself, or use "
        "pets.dp.laplace / pets.dp.gaussian for real numbers."
    )


@lru_cache(maxsize=256)
def _certified_laplace_scale(epsilon: float, sensitivity: float) -> float:
    """The smallest float scale >= sensitivity/epsilon whose OpenDP map is <= epsilon."""
    scale = sensitivity / epsilon
    while float(_sampling.int_measurement("laplace", scale).map(sensitivity)) > epsilon:
        scale = math.nextafter(scale, math.inf)
    return scale


@lru_cache(maxsize=256)
def _certified_gaussian_scale(epsilon: float, delta: float, sensitivity: float) -> float:
    """Sigma found by OpenDP's binary search over its own zCDP -> (epsilon, delta) conversion."""
    dp = require_opendp()
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T=float)

    def make(scale: float) -> Any:
        return dp.c.make_fix_delta(
            dp.c.make_zCDP_to_approxDP(dp.m.make_gaussian(*space, scale=scale)), delta
        )

    return float(dp.binary_search_param(make, d_in=sensitivity, d_out=(epsilon, delta)))


@register_mechanism("discrete_laplace")
class DiscreteLaplaceMechanism(AdditiveMechanism):
    """Adds discrete Laplace noise (P[z] ~ exp(-|z|/b), b = sensitivity/epsilon) to integers.

    Pure epsilon-DP for integer vectors whose L1 sensitivity is ``sensitivity``.
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
        self._sensitivity = check_sensitivity(sensitivity)
        self._scale = _certified_laplace_scale(self._epsilon, self._sensitivity)

    @property
    def std(self) -> float:
        """Exact: variance of the discrete Laplace is 2 q / (1 - q)^2 with q = exp(-1/b)."""
        q = math.exp(-1.0 / self._scale)
        return math.sqrt(2.0 * q) / (1.0 - q)

    def __call__(self, x: Any) -> npt.NDArray[np.int64]:
        return _sampling.sample_int("laplace", _as_integers(x), scale=self._scale)

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.int64]:
        return self(np.zeros(as_shape(shape), dtype=np.int64))

    def dp_event(self) -> Event:
        if float(self._sensitivity).is_integer():
            return {
                "type": "discrete_laplace",
                "noise_parameter": 1.0 / self._scale,
                "sensitivity": int(self._sensitivity),
            }
        return {"type": "epsilon_delta", "epsilon": self._epsilon, "delta": 0.0}

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "sensitivity": self._sensitivity}


@register_mechanism("discrete_gaussian")
class DiscreteGaussianMechanism(AdditiveMechanism):
    """Adds discrete Gaussian noise to integers, calibrated for ``(epsilon, delta)``-DP.

    Sigma is found by OpenDP (``binary_search_param`` over ``make_gaussian`` on
    an ``i64`` vector domain, converted from zCDP with ``make_zCDP_to_approxDP``),
    so OpenDP certifies the promise end to end; it is a few percent larger than
    the continuous analytic calibration. ``sensitivity`` is an L2 bound.

    >>> import pets.dp
    >>> mechanism = pets.dp.DiscreteGaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1)
    >>> mechanism([0, 0]).shape
    (2,)
    """

    def __init__(self, epsilon: float, delta: float, sensitivity: float = 1.0) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._delta = check_delta(delta, allow_zero=False)
        self._sensitivity = check_sensitivity(sensitivity)
        self._scale = _certified_gaussian_scale(self._epsilon, self._delta, self._sensitivity)

    def __call__(self, x: Any) -> npt.NDArray[np.int64]:
        return _sampling.sample_int("gaussian", _as_integers(x), scale=self._scale)

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.int64]:
        return self(np.zeros(as_shape(shape), dtype=np.int64))

    def dp_event(self) -> Event:
        # rho-zCDP with rho = sensitivity^2 / (2 sigma^2) (Canonne, Kamath & Steinke 2020, Thm 4).
        return {"type": "zcdp", "rho": self._sensitivity**2 / (2.0 * self._scale**2)}

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "delta": self._delta, "sensitivity": self._sensitivity}
