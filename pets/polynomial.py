"""Polynomial evaluation on private tensors, written once for every backend.

Powers are built as a binary tree, so ``x^k`` costs ``ceil(log2 k)``
multiplicative levels and a degree-``d`` polynomial ``ceil(log2 d) + 1``
(one more level for coefficients other than 1). :func:`depth` tells ``compile``
how deep a polynomial goes before any key is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pets.tensor import PrivateTensor

__all__ = ["depth", "evaluate"]


def _trim(coefficients: Sequence[float]) -> list[float]:
    coeffs = [float(c) for c in coefficients]
    while len(coeffs) > 1 and coeffs[-1] == 0.0:
        coeffs.pop()
    if not coeffs:
        raise ValueError("a polynomial needs at least one coefficient")
    return coeffs


def depth(coefficients: Sequence[float]) -> int:
    """Multiplicative depth :func:`evaluate` uses for these coefficients.

    ``x^k`` costs ``ceil(log2 k)`` levels; a coefficient other than 1 one more.
    """
    coeffs = _trim(coefficients)
    return max(
        (math.ceil(math.log2(k)) + (c != 1.0) for k, c in enumerate(coeffs) if k and c),
        default=0,
    )


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
        raise ValueError(
            "a constant polynomial does not depend on the private input; use the plain constant"
        )
    powers: dict[int, PrivateTensor] = {1: x}
    for k in range(2, degree + 1):
        high = 1 << (k.bit_length() - 1)
        low = k - high
        half = powers[high // 2]
        powers[k] = half * half if low == 0 else powers[high] * powers[low]
    terms = [
        powers[k] if c == 1.0 else powers[k] * c for k, c in enumerate(coeffs) if k and c
    ]
    result = terms[0]
    for term in terms[1:]:
        result = result + term
    return result + coeffs[0] if coeffs[0] != 0.0 else result
