"""A complete pets backend written outside ``pets/``: fixed-point integers, registered from here.

Values are held as int64 multiples of ``2**-16`` (the arithmetic of secret-sharing
MPC, without the sharing): products are rescaled with rounding, comparisons and
reshapes are exact. It names the exact lowering, so ``pets.compile`` runs any
model pets supports on it. ``docs/backends.md`` walks through it; the
conformance suite (``tests/test_conformance*.py``) and
``tests/test_outside_backend.py`` test it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

import pets
from pets.backends.arrays import ArrayShapes

__all__ = ["FixedPointBackend"]

BITS = 16
SCALE = float(1 << BITS)
LIMIT = 2.0 ** (62 - 2 * BITS)  # |x| below this keeps a product inside int64


def encode(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if np.abs(array).max(initial=0.0) >= LIMIT:
        raise pets.ValueRangeError(f"fixed-point values must stay below {LIMIT:.3g} in size; "
                                   "scale the data down")
    return np.round(array * SCALE).astype(np.int64)


def decode(native: np.ndarray) -> np.ndarray:
    return native.astype(np.float64) / SCALE


def rescale(product: np.ndarray) -> np.ndarray:
    """A product of two encodings (scale ``2**32``) back to scale ``2**16``, rounded."""
    return (product + (1 << (BITS - 1))) >> BITS


class FixedPointBackend(ArrayShapes, pets.Backend):
    """Fixed-point integers of any rank: exact comparisons, no secrecy (a teaching backend)."""

    tolerance: ClassVar[float] = 1e-3
    layouts: ClassVar[tuple[str, ...]] = ("fixed",)
    capabilities: ClassVar[pets.Capabilities] = pets.Capabilities(
        comparisons=True, private_weights=True, max_rank=None, training=False, parties="1")
    lowering: ClassVar[str] = "exact"

    def __init__(self, *, key_id: str | None = None, public: bool = False) -> None:
        super().__init__(key_id=key_id)
        self._public = public

    @property
    def has_secret_key(self) -> bool:
        return not self._public

    def public(self) -> FixedPointBackend:
        return FixedPointBackend(key_id=self.key_id, public=True)

    # ---- the core ------------------------------------------------------------------------

    def _encrypt(self, array: np.ndarray | None, *, src: int | None, layout: str,
                 requirements: pets.Requirements | None = None) -> np.ndarray:
        assert array is not None
        return encode(array)

    def _decrypt(self, native: np.ndarray, *, to: int | None) -> np.ndarray:
        return decode(native)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def add_plain(self, a: np.ndarray, plain: np.ndarray) -> np.ndarray:
        return a + encode(plain)

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return rescale(a * b)

    def multiply_plain(self, a: np.ndarray, plain: np.ndarray) -> np.ndarray:
        return rescale(a * encode(plain))

    def negate(self, a: np.ndarray) -> np.ndarray:
        return -a

    def matmul_plain(self, a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return rescale(a @ encode(matrix))

    def sum(self, a: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(a.sum(axis=axes), dtype=np.int64)

    def layout_of(self, a: np.ndarray) -> str:
        return "fixed"

    def _dump_tensor(self, a: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
        return {"dims": list(a.shape)}, [np.ascontiguousarray(a, dtype="<i8").tobytes()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> np.ndarray:
        try:
            dims = [int(n) for n in meta["dims"]]
            (blob,) = blobs
        except (KeyError, TypeError, ValueError) as exc:
            raise pets.SerializationError("fixed-point tensor bytes are malformed") from exc
        if any(n < 0 for n in dims) or len(blob) != 8 * math.prod(dims):
            raise pets.SerializationError("fixed-point tensor bytes do not hold their shape")
        return np.frombuffer(blob, dtype="<i8").reshape(dims).copy()

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        return {"secret": bool(include_secret_key and self.has_secret_key)}, []

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any],
                   blobs: list[bytes]) -> FixedPointBackend:
        if blobs or set(meta) - {"secret"}:
            raise pets.SerializationError("fixed-point key bytes carry unexpected material")
        return cls(key_id=key_id, public=not bool(meta.get("secret", False)))

    # ---- optional: what its capabilities promise ---------------------------------------------

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return rescale(a @ b)

    def less_than_zero(self, a: np.ndarray) -> np.ndarray:
        return (a < 0).astype(np.int64) << BITS

    def conv2d(self, a: np.ndarray, weight: Any, *, stride: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> np.ndarray:
        """Exact integer convolution (float64 holds these sums exactly), then one rescale."""
        kernel = torch.as_tensor(encode(weight if not isinstance(weight, np.ndarray)
                                        or weight.dtype != np.int64 else decode(weight)),
                                 dtype=torch.float64)
        out = torch.nn.functional.conv2d(torch.as_tensor(a, dtype=torch.float64), kernel,
                                         stride=stride, padding=padding, dilation=dilation,
                                         groups=groups)
        return rescale(out.numpy().round().astype(np.int64))


pets.register_backend("fixedpoint", FixedPointBackend)
