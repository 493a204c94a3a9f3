"""The owner's parameters in the hybrid: plain numbers on the owner, a shape on the client.

Under the hybrid, what the model owner "encrypts" (its weights, with
``weights_from=r``) is never shared: it stays on the owner in the clear and
the other party holds only its shape. Reshaping, transposing, slicing and
broadcasting are local on both sides; products with private data go through
the HE linear layer (:mod:`pets.backends.hybrid.linear`).

>>> import numpy as np
>>> w = Owned(np.arange(6.0).reshape(2, 3), owner=1, here=1)
>>> w.apply(lambda a: a.T).shape, Owned.placeholder((2, 3), owner=1).apply(np.transpose).shape
((3, 2), (3, 2))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Owned"]


class Owned:
    """Party ``owner``'s plain array (``values`` there, ``None`` elsewhere) and its shape."""

    def __init__(self, values: np.ndarray | None, *, owner: int, here: int,
                 shape: tuple[int, ...] | None = None) -> None:
        self.owner = owner
        self.values = values if here == owner else None
        self.shape = tuple(values.shape) if values is not None else tuple(shape or ())

    @classmethod
    def placeholder(cls, shape: tuple[int, ...], *, owner: int) -> Owned:
        """What the other party holds: the shape only."""
        return cls(None, owner=owner, here=-1, shape=shape)

    @property
    def held(self) -> bool:
        return self.values is not None

    def apply(self, change: Callable[[np.ndarray], Any]) -> Owned:
        """A local change of layout (the same on both sides: the client runs it on zeros)."""
        if self.values is not None:
            out = np.asarray(change(self.values))
            return Owned(out, owner=self.owner, here=self.owner)
        shape = np.asarray(change(np.zeros(self.shape, dtype=np.float64))).shape
        return Owned.placeholder(tuple(shape), owner=self.owner)

    def combine(self, other: Owned, join: Callable[[np.ndarray, np.ndarray], Any]) -> Owned:
        """Two arrays of the same owner joined locally (sum, product, concatenation)."""
        if self.values is not None and other.values is not None:
            return Owned(np.asarray(join(self.values, other.values)), owner=self.owner,
                         here=self.owner)
        shape = np.asarray(join(np.zeros(self.shape), np.zeros(other.shape))).shape
        return Owned.placeholder(tuple(shape), owner=self.owner)

    def __repr__(self) -> str:
        side = "values" if self.held else "shape only"
        return f"Owned(party {self.owner}, {self.shape}, {side})"
