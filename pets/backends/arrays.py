"""Shape operations for backends whose native data is a numpy array of the user's shape.

Moving values between positions needs no cryptography when each value sits in its
own array element (the plain backend, a fixed-point backend): such a backend mixes
:class:`ArrayShapes` in and gets ``reshape``, ``transpose``, ``take``, ``concat``
and ``broadcast_to`` as numpy does them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ArrayShapes"]


class ArrayShapes:
    """The optional shape primitives of :class:`~pets.backends.base.Backend`, by numpy."""

    def reshape(self, a: np.ndarray, old: tuple[int, ...], new: tuple[int, ...]) -> np.ndarray:
        return a.reshape(new)

    def transpose(self, a: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(axes))

    def take(self, a: np.ndarray, index: Any, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(a[index])

    def concat(self, natives: Sequence[np.ndarray], axis: int,
               shapes: Sequence[tuple[int, ...]]) -> np.ndarray:
        return np.concatenate(list(natives), axis=axis)

    def broadcast_to(self, a: np.ndarray, old: tuple[int, ...], new: tuple[int, ...]) -> np.ndarray:
        return np.array(np.broadcast_to(a, new))

    def native_shape(self, a: np.ndarray) -> tuple[int, ...]:
        return tuple(int(n) for n in a.shape)
