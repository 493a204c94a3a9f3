"""``PrivateTensor``: encrypted or secret-shared data with numpy-like operators.

The same operators work on every backend; each one checks its operands once
here (shape, finiteness, keys, layout) and then calls one backend primitive.

>>> import numpy as np, pets
>>> be = pets.backend("plain")
>>> x = be.encrypt(np.array([[1.0, 2.0]]))
>>> be.decrypt((x * 0.5 + x) @ np.eye(2)).tolist()
[[1.5, 3.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.errors import LayoutMismatchError, NonFiniteValueError, ShapeMismatchError

if TYPE_CHECKING:
    from pets.backends.base import Backend

__all__ = ["PrivateTensor", "as_matrix", "plain_array"]


def plain_array(data: Any, *, what: str, max_ndim: int = 2) -> np.ndarray:
    """A finite float64 numpy array from numpy, torch, lists or scalars."""
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # torch.Tensor, without importing torch
        data = data.detach().cpu().numpy()
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} needs numbers (numpy, torch, list), got {type(data).__name__}"
        ) from exc
    if array.ndim > max_ndim:
        raise ShapeMismatchError(
            f"{what} takes arrays of at most {max_ndim} dimensions (samples, features), got "
            f"shape {array.shape}; flatten each sample first, e.g. x.reshape(len(x), -1)"
        )
    if not np.all(np.isfinite(array)):
        raise NonFiniteValueError(
            f"{what} got NaN or infinite values; clean or clip the data first "
            "(e.g. numpy.nan_to_num) — encrypted arithmetic cannot represent them"
        )
    return array


def as_matrix(array: np.ndarray) -> np.ndarray:
    """The backend's 2-D view: ``()`` -> ``(1, 1)``, ``(F,)`` -> ``(1, F)``, ``(B, F)`` as is."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array


class PrivateTensor:
    """Data that only the key holder (or all parties together) can read.

    Holds its backend, the backend's native data (ciphertexts, shares or, for the
    plain backend, an array) and its shape. Operators: ``+ - *`` with scalars,
    plain arrays and other private tensors of the same backend and keys; ``@``
    with a plain matrix; ``sum``; negation; ``polyval``.
    """

    __array_ufunc__ = None  # numpy defers ``ndarray + PrivateTensor`` to our reflected operators

    def __init__(self, backend: Backend, data: Any, shape: Sequence[int]) -> None:
        self.backend = backend
        self.data = data
        self.shape: tuple[int, ...] = tuple(int(n) for n in shape)

    # ---- introspection ------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def layout(self) -> str:
        """How the backend packs this tensor (e.g. ``"batched"`` or ``"per_sample"``)."""
        return self.backend.layout_of(self.data)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d private tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"PrivateTensor(shape={self.shape}, backend={self.backend.name!r}, "
            f"layout={self.layout!r})"
        )

    def to_bytes(self) -> bytes:
        """Serialise ciphertexts or shares (never a key); load with ``pets.load_tensor``."""
        return self.backend.tensor_to_bytes(self)

    # ---- operand handling ---------------------------------------------------

    def _wrap(self, data: Any, shape: Sequence[int] | None = None) -> PrivateTensor:
        return PrivateTensor(self.backend, data, self.shape if shape is None else shape)

    def _private_operand(self, other: PrivateTensor, op: str) -> Any:
        self.backend.check_same_keys(other.backend)
        if other.shape != self.shape:
            raise ShapeMismatchError(
                f"cannot {op} private tensors of shapes {self.shape} and {other.shape}; "
                "private operands must have equal shapes (reshape the plain data before encrypting)"
            )
        if other.layout != self.layout:
            raise LayoutMismatchError(
                f"cannot {op} a {self.layout!r} tensor and a {other.layout!r} tensor; "
                "encrypt both with the same layout"
            )
        return other.data

    def _plain_operand(self, other: Any, op: str) -> np.ndarray:
        array = plain_array(other, what=op)
        try:
            np.broadcast_to(array, self.shape)
        except ValueError:
            raise ShapeMismatchError(
                f"cannot {op} a private tensor of shape {self.shape} and a plain array of "
                f"shape {array.shape}; the plain operand must broadcast to {self.shape}"
            ) from None
        return as_matrix(array)  # broadcasts to the backend's (rows, cols) view

    # ---- arithmetic -----------------------------------------------------------

    def add(self, other: Any) -> PrivateTensor:
        """Element-wise sum with a scalar, plain array or private tensor."""
        if isinstance(other, PrivateTensor):
            return self._wrap(self.backend.add(self.data, self._private_operand(other, "add")))
        return self._wrap(self.backend.add_plain(self.data, self._plain_operand(other, "add")))

    def sub(self, other: Any) -> PrivateTensor:
        """Element-wise difference."""
        if isinstance(other, PrivateTensor):
            return self.add(other.neg())
        return self.add(-self._plain_operand(other, "subtract"))

    def mul(self, other: Any) -> PrivateTensor:
        """Element-wise product with a scalar, plain array or private tensor."""
        if isinstance(other, PrivateTensor):
            return self._wrap(
                self.backend.multiply(self.data, self._private_operand(other, "multiply"))
            )
        return self._wrap(
            self.backend.multiply_plain(self.data, self._plain_operand(other, "multiply"))
        )

    def neg(self) -> PrivateTensor:
        """Negation."""
        return self._wrap(self.backend.negate(self.data))

    def square(self) -> PrivateTensor:
        """Element-wise square (one multiplication)."""
        return self.mul(self)

    def matmul(self, matrix: Any) -> PrivateTensor:
        """Product with a plain matrix ``(features, out)``: ``(B, F) @ (F, O) -> (B, O)``."""
        if isinstance(matrix, PrivateTensor):
            raise TypeError(
                "a private tensor can be multiplied by a plain matrix only; "
                "decrypt one operand or use element-wise multiplication"
            )
        weights = plain_array(matrix, what="matmul")
        if weights.ndim == 1:
            weights = weights.reshape(-1, 1)
        if weights.ndim != 2 or self.ndim == 0 or weights.shape[0] != self.shape[-1]:
            raise ShapeMismatchError(
                f"cannot multiply a private tensor of shape {self.shape} by a matrix of shape "
                f"{weights.shape}; the matrix needs {self.shape[-1] if self.shape else '?'} rows "
                "(transpose a torch Linear weight: x @ W.T)"
            )
        shape = (*self.shape[:-1], weights.shape[1])
        return self._wrap(self.backend.matmul_plain(self.data, weights), shape)

    def sum(self, axis: int | None = None) -> PrivateTensor:
        """Sum over ``axis`` (0: samples, -1/1: features, None: all), keeping dimensions.

        The result keeps the summed axis with length 1, like ``keepdims=True``.
        """
        if self.ndim == 0:
            return self
        axes = range(self.ndim) if axis is None else [axis % self.ndim]
        result = self
        for ax in sorted(axes, reverse=True):
            rows_axis = self.ndim == 2 and ax == 0
            data = (
                self.backend.sum_rows(result.data)
                if rows_axis
                else self.backend.sum_cols(result.data)
            )
            shape = list(result.shape)
            shape[ax] = 1
            result = result._wrap(data, shape)
        return result

    def polyval(self, coefficients: Sequence[float]) -> PrivateTensor:
        """Evaluate ``c0 + c1 x + c2 x^2 + ...`` element-wise at the smallest depth."""
        from pets.polynomial import evaluate

        return evaluate(self, coefficients)

    # ---- operators ------------------------------------------------------------

    def __add__(self, other: Any) -> PrivateTensor:
        return self.add(other)

    def __radd__(self, other: Any) -> PrivateTensor:
        return self.add(other)

    def __sub__(self, other: Any) -> PrivateTensor:
        return self.sub(other)

    def __rsub__(self, other: Any) -> PrivateTensor:
        return self.neg().add(other)

    def __mul__(self, other: Any) -> PrivateTensor:
        return self.mul(other)

    def __rmul__(self, other: Any) -> PrivateTensor:
        return self.mul(other)

    def __neg__(self) -> PrivateTensor:
        return self.neg()

    def __matmul__(self, other: Any) -> PrivateTensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> PrivateTensor:
        raise TypeError(
            "plain @ private is not supported: a private tensor holds samples as rows, so "
            "write x @ W (for a torch Linear weight: x @ W.T)"
        )
