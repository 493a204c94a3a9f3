"""Randomized response: local DP for one bit or one label per person."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp._imports import require_opendp
from pets.dp._validation import as_array, check_epsilon
from pets.dp.mechanisms.base import Event, Mechanism, register_mechanism
from pets.errors import DPConfigurationError

__all__ = ["RandomizedResponse"]

_SMALLEST_FLIP = 1e-300
_MAX_NUDGES = 256  # ulp steps toward a certified parameter before giving up


@lru_cache(maxsize=64)
def _bit_flip_measurement(epsilon: float) -> tuple[Any, float]:
    """OpenDP's bit-vector randomized response with per-bit loss <= epsilon.

    ``make_randomized_response_bitvec(f)`` replaces each bit by a fair coin with
    probability ``f`` (so flips it with probability ``f/2``); one bit costs
    ``ln((2 - f) / f)``. Its map counts a change of one *set bit* (two bits), so
    half of ``map(1)`` is the per-bit loss. ``f`` is nudged up until certified.
    """
    dp = require_opendp()
    # 2 / (1 + e^eps), written so that a huge epsilon underflows to 0 instead of
    # overflowing; below _SMALLEST_FLIP the per-bit loss (~690) is already far past
    # any meaningful epsilon, and a smaller loss than promised is still the promise.
    f = max(2.0 * math.exp(-epsilon) / (1.0 + math.exp(-epsilon)), _SMALLEST_FLIP)
    for _ in range(_MAX_NUDGES):
        measurement = dp.m.make_randomized_response_bitvec(
            dp.bitvector_domain(max_weight=1), dp.discrete_distance(), f=min(f, 1.0)
        )
        if float(measurement.map(1)) / 2.0 <= epsilon:
            return measurement, min(f, 1.0)
        f = math.nextafter(f, math.inf)
    raise _uncertifiable(epsilon)


@lru_cache(maxsize=64)
def _categorical_measurement(epsilon: float, k: int) -> tuple[Any, float]:
    """OpenDP's k-ary randomized response over labels 0..k-1, certified <= epsilon."""
    dp = require_opendp()
    prob = 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))  # e^eps / (e^eps + k - 1), no overflow
    for _ in range(_MAX_NUDGES):
        measurement = dp.m.make_randomized_response(list(range(k)), max(prob, 1.0 / k), T="i64")
        if float(measurement.map(1)) <= epsilon:
            return measurement, max(prob, 1.0 / k)
        prob = math.nextafter(prob, 0.0)
    raise _uncertifiable(epsilon)


def _uncertifiable(epsilon: float) -> DPConfigurationError:
    return DPConfigurationError(
        f"OpenDP cannot certify randomized response at epsilon={epsilon!r}: float rounding "
        "in its privacy map exceeds so small an epsilon (the answers would be pure noise "
        "anyway). Fix: use epsilon >= 1e-9, or do not release anything."
    )


@register_mechanism("randomized_response")
class RandomizedResponse(Mechanism):
    """Each person reports their true answer with probability ``p``, else a different one.

    Binary (``categories=None``): bits are kept with ``p = e^eps / (1 + e^eps)``
    and flipped otherwise, vectorised through OpenDP's
    ``make_randomized_response_bitvec`` (exact Bernoulli, OS CSPRNG).
    k-ary: the true label is kept with ``p = e^eps / (e^eps + k - 1)``, else one
    of the other ``k - 1`` is reported uniformly (OpenDP's
    ``make_randomized_response``, one call per value: ~100 us each).
    The promise is *local*: epsilon per person, each value being one person's.

    >>> import pets.dp
    >>> rr = pets.dp.RandomizedResponse(epsilon=1.0)
    >>> rr([1, 0, 1]).shape
    (3,)
    >>> round(rr.keep_probability, 4)
    0.7311
    """

    def __init__(self, epsilon: float, categories: Sequence[Hashable] | None = None) -> None:
        self._epsilon = check_epsilon(epsilon)
        if categories is None:
            self.categories: tuple[Hashable, ...] | None = None
        else:
            self.categories = tuple(categories)
            if len(self.categories) < 2 or len(set(self.categories)) != len(self.categories):
                raise DPConfigurationError(
                    f"categories must hold at least two distinct labels, got {categories!r}. "
                    "Fix: list every possible answer once, e.g. categories=['a', 'b', 'c']."
                )
        self.keep_probability  # noqa: B018 - certify now, before any budget is charged

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @property
    def num_categories(self) -> int:
        return 2 if self.categories is None else len(self.categories)

    @property
    def keep_probability(self) -> float:
        """The probability of reporting the true answer."""
        if self.categories is None:
            return 1.0 - _bit_flip_measurement(self._epsilon)[1] / 2.0
        return _categorical_measurement(self._epsilon, self.num_categories)[1]

    def __call__(self, x: Any) -> npt.NDArray[Any]:
        if self.categories is None:
            return self._bits(x)
        return self._labels(x)

    def _bits(self, x: Any) -> npt.NDArray[Any]:
        values = as_array(x, name="bits")
        if not np.all((values == 0) | (values == 1)):
            raise DPConfigurationError(
                "binary randomized response needs 0/1 or boolean values. "
                "Fix: pass bits, or give categories=[...] for labels."
            )
        measurement, _ = _bit_flip_measurement(self._epsilon)
        flat = values.astype(np.uint8).ravel()
        packed = np.packbits(flat)
        released = np.frombuffer(measurement(packed.tobytes()), dtype=np.uint8)
        bits = np.unpackbits(released)[: flat.size].reshape(values.shape)
        return bits.astype(values.dtype)

    def _labels(self, x: Any) -> npt.NDArray[Any]:
        assert self.categories is not None
        labels = list(x.tolist() if hasattr(x, "tolist") else x)
        index = {label: i for i, label in enumerate(self.categories)}
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise DPConfigurationError(
                f"labels {unknown[:5]!r} are not among categories {list(self.categories)!r}. "
                "Fix: add them to categories (every possible answer must be listed)."
            )
        measurement, _ = _categorical_measurement(self._epsilon, self.num_categories)
        released = [self.categories[measurement(index[label])] for label in labels]
        return np.asarray(released)

    def dp_event(self) -> Event:
        k = self.num_categories
        # dp_accounting's RR: with prob. p_noise answer uniformly among k buckets.
        if self.categories is None:  # OpenDP's f is exactly that probability
            noise = _bit_flip_measurement(self._epsilon)[1]
        else:
            noise = min(1.0, (1.0 - self.keep_probability) * k / (k - 1))
        return {"type": "randomized_response", "noise_parameter": noise, "num_buckets": k}

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self._epsilon, "categories": self.categories}
