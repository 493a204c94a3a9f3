"""Polynomial evaluation on private tensors, written once for every backend.

Powers are built as a binary tree, so ``x^k`` costs ``ceil(log2 k)``
multiplicative levels. A term ``c * x^k`` with ``k = 2^h + l`` (``0 < l < 2^h``)
is computed as ``(c * x^l) * x^(2^h)``: the coefficient rides on the shallower
factor, so the term costs ``h + 1`` levels instead of ``ceil(log2 k) + 1``
(a degree-3 polynomial needs depth 2, not 3). :func:`depth` tells ``compile``
how deep a polynomial goes before any key is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pets.errors import UnsupportedOperationError

if TYPE_CHECKING:
    from pets.tensor import PrivateTensor

__all__ = ["depth", "evaluate"]


def _trim(coefficients: Sequence[float]) -> list[float]:
    coeffs = [float(c) for c in coefficients]
    while len(coeffs) > 1 and coeffs[-1] == 0.0:
        coeffs.pop()
    if not coeffs:
        raise UnsupportedOperationError("a polynomial needs at least one coefficient")
    return coeffs


def _power_depth(k: int) -> int:
    return math.ceil(math.log2(k)) if k > 1 else 0


def _split(k: int) -> tuple[int, int]:
    """``k = high + low`` with ``high`` the largest power of two not above ``k``."""
    high = 1 << (k.bit_length() - 1)
    return high, k - high


def _term_depth(k: int, c: float) -> int:
    if c == 1.0:
        return _power_depth(k)
    high, low = _split(k)
    if low == 0:
        return _power_depth(k) + 1
    return max(_power_depth(low) + 1, _power_depth(high)) + 1


def depth(coefficients: Sequence[float]) -> int:
    """Multiplicative depth :func:`evaluate` uses for these coefficients.

    >>> depth([0.5, 0.25, 0.0, -0.02])   # degree 3: (c3 * x) * x^2
    2
    """
    coeffs = _trim(coefficients)
    return max((_term_depth(k, c) for k, c in enumerate(coeffs) if k and c), default=0)


def evaluate(x: PrivateTensor, coefficients: Sequence[float]) -> PrivateTensor:
    """``c0 + c1 x + ... + cd x^d`` element-wise, at depth :func:`depth`.

    >>> import pets
    >>> be = pets.backend("plain")
    >>> be.decrypt(be.encrypt([2.0]).polyval([1.0, 0.0, 3.0])).tolist()
    [13.0]
    """
    coeffs = _trim(coefficients)
    degree = len(coeffs) - 1
    if degree == 0:
        raise UnsupportedOperationError(
            "a constant polynomial does not depend on the private input; use the plain constant"
        )
    powers: dict[int, PrivateTensor] = {1: x}

    def power(k: int) -> PrivateTensor:
        if k not in powers:
            high, low = _split(k)
            powers[k] = power(high // 2).square() if low == 0 else power(high) * power(low)
        return powers[k]

    def term(k: int, c: float) -> PrivateTensor:
        high, low = _split(k)
        if c == 1.0:
            return power(k)
        if low == 0:
            return power(k) * c
        return (power(low) * c) * power(high)

    terms = [term(k, c) for k, c in enumerate(coeffs) if k and c]
    result = terms[0]
    for other in terms[1:]:
        result = result + other
    return result + coeffs[0] if coeffs[0] != 0.0 else result
