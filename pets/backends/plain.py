"""The plaintext reference backend: numpy, no protection.

Every other backend is tested against it, and every benchmark divides by it.
Its "ciphertexts" are float64 arrays of any rank; "encrypting" copies; every
function (ReLU, softmax, exp...) is exact, so it is the reference for MPC's
protocols and HE's approximations alike.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from pets.backends.arrays import ArrayShapes
from pets.backends.base import Backend, Capabilities, Requirements
from pets.errors import SerializationError
from pets.registry import register_backend

__all__ = ["PlainBackend"]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(a - a.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


#: the exact functions :mod:`pets.functions` asks for
_EXACT: dict[str, Any] = {
    "relu": lambda a: np.maximum(a, 0.0),
    "exp": np.exp,
    "reciprocal": lambda a: 1.0 / a,
    "inv_sqrt": lambda a: 1.0 / np.sqrt(a),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
}


@register_backend("plain")
class PlainBackend(ArrayShapes, Backend):
    """Reference backend: the same API as the private ones, computing in the clear.

    >>> import pets
    >>> be = pets.backend("plain")
    >>> be.decrypt(be.encrypt([1.0, 2.0]).sum()).tolist()
    3.0
    """

    tolerance: ClassVar[float] = 1e-12
    layouts: ClassVar[tuple[str, ...]] = ("dense",)
    capabilities: ClassVar[Capabilities] = Capabilities(
        comparisons=True, private_weights=True, max_rank=None,
        training=True, parties="1",
    )

    def __init__(self, *, key_id: str | None = None, public: bool = False) -> None:
        super().__init__(key_id=key_id)
        self._public = public

    @property
    def has_secret_key(self) -> bool:
        return not self._public

    def public(self) -> PlainBackend:
        return PlainBackend(key_id=self.key_id, public=True)

    def _encrypt(
        self, array: np.ndarray | None, *, src: int | None, layout: str,
        requirements: Requirements | None = None,
    ) -> np.ndarray:
        assert array is not None  # one party: it always holds the data
        return np.array(array, dtype=np.float64)

    def _decrypt(self, native: np.ndarray, *, to: int | None) -> np.ndarray:
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

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b

    def sum(self, a: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(a.sum(axis=axes))

    def less_than_zero(self, a: np.ndarray) -> np.ndarray:
        return (a < 0).astype(np.float64)

    def conv2d(
        self, a: np.ndarray, weight: Any, *, stride: tuple[int, int], padding: tuple[int, int],
        dilation: tuple[int, int], groups: int,
    ) -> np.ndarray:
        import torch

        kernel = torch.as_tensor(np.asarray(weight, dtype=np.float64))
        out = torch.nn.functional.conv2d(torch.as_tensor(a), kernel, stride=stride,
                                         padding=padding, dilation=dilation, groups=groups)
        return out.numpy()

    def function(self, name: str, a: np.ndarray, **options: Any) -> np.ndarray | None:
        if name in _EXACT:
            return np.asarray(_EXACT[name](a), dtype=np.float64)
        if name == "softmax":
            return _softmax(a, options["axis"])
        if name == "max":
            return np.asarray(a.max(axis=options["axis"]))
        if name == "gelu":
            import torch

            out = torch.nn.functional.gelu(torch.as_tensor(a), approximate=options["approximate"])
            return out.numpy()
        return None

    def layout_of(self, a: np.ndarray) -> str:
        return "dense"

    def _dump_tensor(self, a: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
        return {"dims": list(a.shape)}, [np.ascontiguousarray(a, dtype="<f8").tobytes()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> np.ndarray:
        try:
            dims = [int(n) for n in meta["dims"]]
            (blob,) = blobs
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError("plain tensor bytes are malformed") from exc
        if any(n < 0 for n in dims) or len(blob) != 8 * math.prod(dims):
            raise SerializationError(
                f"plain tensor bytes hold {len(blob)} bytes, not the {dims} float64 array "
                "their header promises; they are corrupted"
            )
        return np.frombuffer(blob, dtype="<f8").reshape(dims).copy()

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        return {"secret": bool(include_secret_key and self.has_secret_key)}, []

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend:
        if blobs or set(meta) - {"secret"}:
            raise SerializationError(
                "these bytes are labelled as a plain backend but carry key material; they were "
                "relabelled or corrupted"
            )
        return cls(key_id=key_id, public=not bool(meta.get("secret", False)))
