"""The Laplace mechanism: pure epsilon-DP noise for real values with bounded L1 sensitivity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp import _sampling, _splitting
from pets.dp._validation import (
    MAX_FLOAT_SCALE,
    as_array,
    check_epsilon,
    check_finite,
    check_noise_scale,
    check_released,
    check_sensitivity,
)
from pets.dp.mechanisms.base import AdditiveMechanism, Event, as_shape, register_mechanism

__all__ = ["LaplaceMechanism"]

_FLOAT_MARGIN = 1.0 + 1e-12  # absorbs float rounding in OpenDP's own privacy map


@register_mechanism("laplace")
class LaplaceMechanism(AdditiveMechanism):
    """Adds Laplace(b) noise, ``b = sensitivity / epsilon``, to each value: epsilon-DP.

    ``sensitivity`` bounds the L1 norm of the change one person can make to the
    whole input vector. Noise comes from OpenDP's ``make_laplace`` over a float
    vector domain (exact discrete Laplace on a ``2**k`` grid, OS CSPRNG); the
    scale is widened by a relative ``n * 2**k / sensitivity`` (below 1e-6 for a
    million values) to pay for rounding the input to that grid.

    >>> import numpy as np, pets.dp
    >>> mechanism = pets.dp.LaplaceMechanism(epsilon=1.0, sensitivity=2.0)
    >>> mechanism.scale
    2.0
    >>> mechanism(np.zeros(3)).shape
    (3,)
    """

    def __init__(self, epsilon: float, sensitivity: float = 1.0) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._sensitivity = check_sensitivity(sensitivity)
        check_noise_scale(self.scale, limit=MAX_FLOAT_SCALE, what="Laplace")

    @property
    def scale(self) -> float:
        """Laplace ``b``: noise std is ``sqrt(2) * b``."""
        return self._sensitivity / self._epsilon

    @property
    def std(self) -> float:
        return math.sqrt(2.0) * self.scale

    def sampling_parameters(self, size: int) -> tuple[float, int]:
        """``(scale, k)`` given to OpenDP for ``size`` values, rounding paid for."""
        k = _sampling.grid_exponent(self.scale, self._sensitivity)
        widened = self._sensitivity + size * 2.0**k
        return widened / self._epsilon * _FLOAT_MARGIN, k

    def __call__(self, x: Any) -> npt.NDArray[np.float64]:
        values = as_array(x).astype(np.float64, copy=False)
        check_finite(values)
        scale, k = self.sampling_parameters(values.size)
        noisy = _sampling.sample_float("laplace", values, scale=scale, k=k)
        return check_released(noisy, what="values")

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[np.float64]:
        return self(np.zeros(as_shape(shape)))

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[np.float64]:
        """``Gamma(1/parts, b) - Gamma(1/parts, b)``: ``parts`` of them sum to Laplace(b)."""
        return _splitting.gamma_difference(as_shape(shape), scale=self.scale, parts=parts)

    def dp_event(self) -> Event:
        return {"type": "laplace", "noise_multiplier": self.scale / self._sensitivity}

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "sensitivity": self._sensitivity}
