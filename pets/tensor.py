"""``PrivateTensor``: encrypted or secret-shared data with numpy-like operators.

The same operators work on every backend; each one checks its operands once
here (shape, finiteness, keys, layout) and then calls one backend primitive.
This module also wraps native data into tensors (encrypt, decrypt, load), so
that backends only ever see their own native data.

>>> import numpy as np, pets
>>> be = pets.backend("plain")
>>> x = be.encrypt(np.array([[1.0, 2.0]]))
>>> be.decrypt((x * 0.5 + x) @ np.eye(2)).tolist()
[[1.5, 3.0]]
>>> be.decrypt(x.sum(axis=0)).tolist(), be.decrypt(x.T).shape
([1.0, 2.0], (2, 1))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.errors import (
    KeyMismatchError,
    LayoutMismatchError,
    MissingKeyError,
    NonFiniteValueError,
    SerializationError,
    ShapeMismatchError,
    UnsupportedOperationError,
)
from pets.serialization import unpack

if TYPE_CHECKING:
    from pets.backends.base import Backend, Requirements

__all__ = ["PrivateTensor", "concat", "decrypt", "encrypt", "load_tensor", "plain_array"]


def plain_array(data: Any, *, what: str, max_ndim: int | None = None) -> np.ndarray:
    """A finite float64 numpy array from numpy, torch, lists or scalars."""
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # torch.Tensor, without importing torch
        data = data.detach().cpu().numpy()
    array = _real_array(data, what)
    if max_ndim is not None and array.ndim > max_ndim:
        raise ShapeMismatchError(
            f"{what} takes arrays of at most {max_ndim} dimensions (samples, features) on this "
            f"backend, got shape {array.shape}; flatten each sample first, e.g. "
            "x.reshape(len(x), -1)"
        )
    if not np.all(np.isfinite(array)):
        raise NonFiniteValueError(
            f"{what} got NaN or infinite values; clean or clip the data first "
            "(e.g. numpy.nan_to_num) — encrypted arithmetic cannot represent them"
        )
    return array


def _real_array(data: Any, what: str) -> np.ndarray:
    """``data`` as float64, or a pets error naming what it holds instead of real numbers."""
    try:
        raw = np.asarray(data)
    except ValueError:  # lists of different lengths: numpy refuses a ragged array
        raise ShapeMismatchError(
            f"{what} got nested lists of different lengths (a ragged array); give every row "
            "the same length, e.g. pad the short ones or encrypt each row on its own"
        ) from None
    if np.iscomplexobj(raw):
        raise UnsupportedOperationError(
            f"{what} needs real numbers, got complex values; pass the real and imaginary "
            "parts as separate arrays (numpy.real, numpy.imag)"
        )
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise UnsupportedOperationError(
            f"{what} needs numbers (numpy, torch, list of numbers), got "
            f"{type(data).__name__} holding {raw.dtype.name} values; convert the data to "
            "numbers first (e.g. numpy.asarray(x, dtype=float))"
        ) from None


# ---- wrapping native data (the backend's public encrypt/decrypt/load call these) ----------


def encrypt(backend: Backend, data: Any, *, src: int | None = None,
            layout: str | None = None, requirements: Requirements | None = None) -> PrivateTensor:
    """``backend.encrypt``: check the data and the party, then wrap the backend's native data.

    With ``requirements`` (``backend.encrypt_for``) the backend also chooses the packing.
    """
    src = backend.check_party(src, "src")
    if backend.parties == 1 and data is None:
        raise TypeError("encrypt needs data (numpy, torch, list); only under MPC do the "
                        "parties other than src pass None")
    if data is None:
        array = None
    else:
        # under MPC a misplaced or missing array is found by all parties together (the
        # backend compares notes), so that none is left waiting for the others
        array = plain_array(data, what="encrypt", max_ndim=backend.capabilities.max_rank)
        if array.size == 0:
            raise ShapeMismatchError(
                f"cannot encrypt an empty array (shape {array.shape}); encrypt at least one value"
            )
    if layout is None and requirements is not None:
        layout = backend.choose_layout(array.shape[0] if array is not None and array.ndim else 1)
    native = backend._encrypt(
        array, src=src, layout=backend._check_layout(layout), requirements=requirements
    )
    shape = array.shape if array is not None else backend.native_shape(native)
    return PrivateTensor(backend, native, shape)


def decrypt(backend: Backend, tensor: PrivateTensor, *, to: int | None = None) -> np.ndarray | None:
    """``backend.decrypt``: reveal ``tensor`` to party ``to`` (or all) in its own shape."""
    if not isinstance(tensor, PrivateTensor):
        raise TypeError(f"decrypt expects a pets.PrivateTensor, got {type(tensor).__name__}")
    backend.check_same_keys(tensor.backend)
    to = backend.check_party(to, "to")
    if not backend.has_secret_key:
        raise MissingKeyError(
            f"this {backend.name} backend holds no secret key (it came from .public(), or from "
            "to_bytes() without include_secret_key=True); send the tensor's to_bytes() to the "
            "key holder and decrypt there"
        )
    values = backend._decrypt(tensor.data, to=to)
    return None if values is None else np.asarray(values).reshape(tensor.shape)


def load_tensor(backend: Backend, data: bytes, *, key: bytes | None = None) -> PrivateTensor:
    """``backend.load_tensor``: check the envelope and its shape before the backend parses it."""
    from pets.backends.base import MAX_ELEMENTS

    envelope = unpack(data, kind="tensor", key=key)
    if envelope.backend != backend.name or envelope.key_id != backend.key_id:
        raise KeyMismatchError(
            f"these bytes hold a {envelope.backend} tensor under key {envelope.key_id}, "
            f"but this is a {backend.name} backend with key {backend.key_id}; load them with "
            "the backend (or its public copy) that encrypted them"
        )
    raw = envelope.meta.get("shape")
    if not isinstance(raw, list) or len(raw) > 8 or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_ELEMENTS for n in raw
    ):
        raise SerializationError(
            f"pets tensor bytes carry no valid shape ({str(raw)[:60]}); each dimension must be "
            f"an integer in [1, {MAX_ELEMENTS}]"
        )
    shape = tuple(raw)
    size = int(np.prod(shape, dtype=object))
    if size > MAX_ELEMENTS:
        raise SerializationError(
            f"pets tensor bytes announce shape {shape} ({size} values), beyond the "
            f"{MAX_ELEMENTS} a tensor may hold; they are forged or corrupted"
        )
    native = backend._load_tensor(envelope.meta, envelope.blobs)
    held = int(np.prod(backend.native_shape(native), dtype=object))
    if held != size:
        raise SerializationError(
            f"pets tensor bytes say shape {shape} but hold "
            f"{'x'.join(map(str, backend.native_shape(native)))} values; they are corrupted"
        )
    return PrivateTensor(backend, native, shape)


def concat(tensors: Sequence[PrivateTensor], axis: int = 0) -> PrivateTensor:
    """Join private tensors along ``axis``, e.g. the column blocks of several parties.

    >>> import pets
    >>> be = pets.backend("plain")
    >>> a, b = be.encrypt([[1.0], [2.0]]), be.encrypt([[3.0, 4.0], [5.0, 6.0]])
    >>> be.decrypt(pets.concat([a, b], axis=1)).tolist()
    [[1.0, 3.0, 4.0], [2.0, 5.0, 6.0]]
    """
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, PrivateTensor) for t in tensors):
        raise TypeError("concat takes a non-empty list of pets.PrivateTensor")
    first = tensors[0]
    for t in tensors[1:]:
        first.backend.check_same_keys(t.backend)
    ndim = first.ndim
    if ndim == 0 or any(t.ndim != ndim for t in tensors):
        raise ShapeMismatchError(
            f"concat needs tensors of the same rank >= 1, got shapes {[t.shape for t in tensors]}"
        )
    ax = _axis(axis, ndim)
    for t in tensors:
        if t.shape[:ax] + t.shape[ax + 1:] != first.shape[:ax] + first.shape[ax + 1:]:
            raise ShapeMismatchError(
                f"concat along axis {axis} needs equal sizes on the other axes, got shapes "
                f"{[t.shape for t in tensors]}"
            )
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in tensors)
    native = first.backend.concat([t.data for t in tensors], ax, [t.shape for t in tensors])
    return PrivateTensor(first.backend, native, shape)


def _axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not (
        -ndim <= int(axis) < ndim
    ):
        raise ShapeMismatchError(
            f"axis {axis!r} is out of range for a tensor of {ndim} dimension(s); use an axis "
            f"in [{-ndim}, {ndim - 1}]"
        )
    return int(axis) % ndim


class PrivateTensor:
    """Data that only the key holder (or all parties together) can read.

    Holds its backend, the backend's native data (ciphertexts, shares or, for the
    plain backend, an array) and its shape. Operators follow numpy: ``+ - *``
    with scalars, plain arrays and other private tensors of the same backend
    and keys (broadcasting plain operands); ``/`` by plain values; ``** k`` for
    integers ``k >= 1``; ``@`` with a plain matrix, or with another private
    matrix where the backend can; ``sum``/``mean`` over axes; indexing,
    ``.T`` and ``reshape`` where the backend's packing allows; comparisons and
    the functions of :mod:`pets.functions` where it has the capability.
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
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

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

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a private tensor is secret; decrypt it first (or use "
            "arithmetic such as x * (x > 0) instead of branching on it)"
        )

    def to_bytes(self, *, key: bytes | None = None) -> bytes:
        """Serialise ciphertexts or shares (never a key); load with ``pets.load_tensor``.

        ``key`` (16 bytes or more) authenticates the bytes with HMAC-SHA256, so that an
        active attacker cannot forge or alter them (the default checksum only catches
        accidents; see docs/security.md).
        """
        return self.backend.tensor_to_bytes(self, key=key)

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
        if not _broadcasts(array.shape, self.shape) or (
            np.broadcast_shapes(array.shape, self.shape) != self.shape
        ):
            raise ShapeMismatchError(
                f"cannot {op} a private tensor of shape {self.shape} and a plain array of "
                f"shape {array.shape}; the plain operand must broadcast to {self.shape}"
            )
        return self.backend.plain_view(array, self.shape, self.data)

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
        return self.add(-plain_array(other, what="subtract"))

    def mul(self, other: Any) -> PrivateTensor:
        """Element-wise product with a scalar, plain array or private tensor."""
        if isinstance(other, PrivateTensor):
            return self._wrap(
                self.backend.multiply(self.data, self._private_operand(other, "multiply"))
            )
        return self._wrap(
            self.backend.multiply_plain(self.data, self._plain_operand(other, "multiply"))
        )

    def div(self, other: Any) -> PrivateTensor:
        """Division by plain values (private divisors: ``x * y.reciprocal()``)."""
        if isinstance(other, PrivateTensor):
            raise TypeError(
                "division by a private tensor is not an operator: write x * y.reciprocal(), "
                "an approximation whose range you choose (see pets.functions.reciprocal)"
            )
        divisor = plain_array(other, what="divide")
        if np.any(divisor == 0):
            raise ZeroDivisionError("division of a private tensor by zero")
        return self.mul(1.0 / divisor)

    def neg(self) -> PrivateTensor:
        """Negation."""
        return self._wrap(self.backend.negate(self.data))

    def square(self) -> PrivateTensor:
        """Element-wise square (one multiplication)."""
        return self.mul(self)

    def pow(self, exponent: Any) -> PrivateTensor:
        """``x ** k`` for an integer ``k >= 1``, by squaring (``ceil(log2 k)`` levels)."""
        if isinstance(exponent, bool) or not isinstance(exponent, (int, np.integer)) or (
            exponent < 1
        ):
            raise TypeError(
                f"a private tensor can be raised to integer powers >= 1 only, got {exponent!r}; "
                "use reciprocal() or sqrt-free formulations for other powers"
            )
        return self if exponent == 1 else self.polyval([0.0] * int(exponent) + [1.0])

    def matmul(self, other: Any) -> PrivateTensor:
        """Matrix product: ``(..., n) @ (n, m) -> (..., m)`` with a plain or private matrix."""
        if isinstance(other, PrivateTensor):
            self.backend.check_same_keys(other.backend)
            if other.ndim != 2 or self.ndim == 0 or other.shape[0] != self.shape[-1]:
                raise ShapeMismatchError(
                    f"cannot multiply private tensors of shapes {self.shape} and {other.shape}; "
                    "the right operand must be a matrix with "
                    f"{self.shape[-1] if self.shape else '?'} rows"
                )
            shape = (*self.shape[:-1], other.shape[1])
            return self._wrap(self.backend.matmul(self.data, other.data), shape)
        weights = plain_array(other, what="matmul")
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

    def sum(
        self, axis: int | Sequence[int] | None = None, *, keepdims: bool = False
    ) -> PrivateTensor:
        """Sum over ``axis`` (an int, a tuple, or ``None`` for all), dropping it as numpy does."""
        if self.ndim == 0:
            return self
        if axis is None:
            axes = tuple(range(self.ndim))
        else:
            listed = [axis] if not isinstance(axis, (tuple, list)) else list(axis)
            axes = tuple(sorted({_axis(a, self.ndim) for a in listed}))
        native = self.backend.sum(self.data, axes, self.shape)
        result = self._wrap(native, [n for i, n in enumerate(self.shape) if i not in axes])
        if keepdims:
            return result.reshape([1 if i in axes else n for i, n in enumerate(self.shape)])
        return result

    def mean(
        self, axis: int | Sequence[int] | None = None, *, keepdims: bool = False
    ) -> PrivateTensor:
        """Mean over ``axis``: a sum and one plain multiplication."""
        total = self.sum(axis, keepdims=keepdims)
        return total * (total.size / max(self.size, 1))

    def polyval(self, coefficients: Sequence[float]) -> PrivateTensor:
        """Evaluate ``c0 + c1 x + c2 x^2 + ...`` element-wise at the smallest depth."""
        from pets.polynomial import evaluate

        return evaluate(self, coefficients)

    # ---- shape ------------------------------------------------------------------

    def reshape(self, *shape: Any) -> PrivateTensor:
        """The same values in another shape (one ``-1`` allowed), where the backend can."""
        nested = len(shape) == 1 and isinstance(shape[0], (tuple, list))
        wanted = tuple(shape[0]) if nested else shape
        try:
            new = np.empty(self.shape, dtype=np.bool_).reshape(wanted).shape
        except (TypeError, ValueError) as exc:
            raise ShapeMismatchError(
                f"cannot reshape a private tensor of shape {self.shape} to {wanted}: {exc}"
            ) from None
        if new == self.shape:
            return self
        return self._wrap(self.backend.reshape(self.data, self.shape, new), new)

    def transpose(self, *axes: int) -> PrivateTensor:
        """Axes permuted (reversed by default), as ``numpy.transpose``."""
        order = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        order = order or tuple(reversed(range(self.ndim)))
        if sorted(_axis(a, self.ndim) for a in order) != list(range(self.ndim)):
            raise ShapeMismatchError(f"axes {order} are not a permutation of {self.ndim} axes")
        order = tuple(_axis(a, self.ndim) for a in order)
        if order == tuple(range(self.ndim)):
            return self
        shape = tuple(self.shape[a] for a in order)
        return self._wrap(self.backend.transpose(self.data, order, self.shape), shape)

    @property
    def T(self) -> PrivateTensor:
        """Axes reversed (a matrix transposed)."""
        return self.transpose()

    def __getitem__(self, index: Any) -> PrivateTensor:
        """numpy indexing by public indices: integers, slices, ``...`` and integer arrays."""
        key = index if isinstance(index, tuple) else (index,)
        if any(k is None or isinstance(k, PrivateTensor) or (
            isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype.kind not in "iu"
        ) for k in key):
            raise TypeError(
                "private tensors take public indices only (integers, slices, ..., integer "
                "arrays); for a secret index multiply by a one-hot mask"
            )
        try:
            shape = np.empty(self.shape, dtype=np.bool_)[index].shape
        except IndexError as exc:
            raise ShapeMismatchError(f"index {index!r} is out of range for shape {self.shape}: "
                                     f"{exc}") from None
        if 0 in shape:
            raise ShapeMismatchError(f"index {index!r} selects nothing from shape {self.shape}")
        return self._wrap(self.backend.take(self.data, index, self.shape), shape)

    # ---- comparisons and functions (pets.functions, written once) -----------------------

    def _compare(self, other: Any, op: str) -> PrivateTensor:
        from pets import functions

        return functions.compare(self, other, op)

    def __lt__(self, other: Any) -> PrivateTensor:
        return self._compare(other, "<")

    def __le__(self, other: Any) -> PrivateTensor:
        return self._compare(other, "<=")

    def __gt__(self, other: Any) -> PrivateTensor:
        return self._compare(other, ">")

    def __ge__(self, other: Any) -> PrivateTensor:
        return self._compare(other, ">=")

    def relu(self) -> PrivateTensor:
        """``max(x, 0)``: one comparison and one multiplication (capability ``comparisons``)."""
        from pets import functions

        return functions.relu(self)

    def exp(self, *, interval: tuple[float, float] | None = None) -> PrivateTensor:
        """``e^x`` (see :func:`pets.functions.exp`)."""
        from pets import functions

        return functions.exp(self, interval=interval)

    def reciprocal(self, *, interval: tuple[float, float] | None = None) -> PrivateTensor:
        """``1 / x`` for ``x`` in a positive ``interval`` (:func:`pets.functions.reciprocal`)."""
        from pets import functions

        return functions.reciprocal(self, interval=interval)

    def sigmoid(self, *, interval: tuple[float, float] | None = None) -> PrivateTensor:
        """``1 / (1 + e^-x)`` (see :func:`pets.functions.sigmoid`)."""
        from pets import functions

        return functions.sigmoid(self, interval=interval)

    def tanh(self, *, interval: tuple[float, float] | None = None) -> PrivateTensor:
        """``tanh x = 2 sigmoid(2x) - 1``."""
        from pets import functions

        return functions.tanh(self, interval=interval)

    def softmax(self, axis: int = -1, *, interval: tuple[float, float] | None = None,
                subtract_max: bool = True) -> PrivateTensor:
        """Softmax over ``axis`` (see :func:`pets.functions.softmax`)."""
        from pets import functions

        return functions.softmax(self, axis, interval=interval, subtract_max=subtract_max)

    def max(self, axis: int | None = None) -> PrivateTensor:
        """Largest value over ``axis`` (all if ``None``), by a tree of comparisons."""
        from pets import functions

        return functions.maximum(self, axis)

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

    def __truediv__(self, other: Any) -> PrivateTensor:
        return self.div(other)

    def __rtruediv__(self, other: Any) -> PrivateTensor:
        raise TypeError(
            "plain / private is not an operator: write c * x.reciprocal(), an approximation "
            "whose range you choose (see pets.functions.reciprocal)"
        )

    def __pow__(self, exponent: Any) -> PrivateTensor:
        return self.pow(exponent)

    def __neg__(self) -> PrivateTensor:
        return self.neg()

    def __matmul__(self, other: Any) -> PrivateTensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> PrivateTensor:
        raise TypeError(
            "plain @ private is not supported: a private tensor holds samples as rows, so "
            "write x @ W (for a torch Linear weight: x @ W.T)"
        )

    __hash__ = object.__hash__
    __eq__ = object.__eq__  # identity: == on private data would have to reveal it


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True

