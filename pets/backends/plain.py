"""The plaintext reference backend: numpy, no protection.

Every other backend is tested against it, and every benchmark divides by it.
Its "ciphertexts" are float64 matrices; "encrypting" copies.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pets.backends.base import Backend
from pets.errors import SerializationError
from pets.registry import register_backend

__all__ = ["PlainBackend"]


@register_backend("plain")
class PlainBackend(Backend):
    """Reference backend: the same API as the private ones, computing in the clear.

    >>> import pets
    >>> be = pets.backend("plain")
    >>> be.decrypt(be.encrypt([1.0, 2.0]).sum()).tolist()
    [3.0]
    """

    tolerance: ClassVar[float] = 1e-12
    layouts: ClassVar[tuple[str, ...]] = ("dense",)

    def _encrypt(
        self, matrix: np.ndarray, layout: str, *, first_product: tuple[int, int] | None = None
    ) -> np.ndarray:
        return np.array(matrix, dtype=np.float64)

    def _decrypt(self, native: np.ndarray) -> np.ndarray:
        return np.array(native)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def add_plain(self, a: np.ndarray, plain: np.ndarray) -> np.ndarray:
        return a + plain

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def multiply_plain(self, a: np.ndarray, plain: np.ndarray) -> np.ndarray:
        return a * plain

    def negate(self, a: np.ndarray) -> np.ndarray:
        return -a

    def matmul_plain(self, a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return a @ matrix

    def sum_rows(self, a: np.ndarray) -> np.ndarray:
        return a.sum(axis=0, keepdims=True)

    def sum_cols(self, a: np.ndarray) -> np.ndarray:
        return a.sum(axis=1, keepdims=True)

    def layout_of(self, a: np.ndarray) -> str:
        return "dense"

    def matrix_shape(self, a: np.ndarray) -> tuple[int, int]:
        return (int(a.shape[0]), int(a.shape[1]))

    def _dump_tensor(self, a: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
        return {"rows": a.shape[0], "cols": a.shape[1]}, [a.astype("<f8").tobytes()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> np.ndarray:
        try:
            rows, cols = int(meta["rows"]), int(meta["cols"])
            (blob,) = blobs
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError("plain tensor bytes are malformed") from exc
        if rows < 0 or cols < 0 or len(blob) != rows * cols * 8:
            raise SerializationError(
                f"plain tensor bytes hold {len(blob)} bytes, not the {rows}x{cols} float64 "
                "matrix their header promises; they are corrupted"
            )
        return np.frombuffer(blob, dtype="<f8").reshape(rows, cols).copy()

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        return {}, []

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend:
        return cls(key_id=key_id)
