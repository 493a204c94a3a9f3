"""The layers of a compiled model, each lowered to ``PrivateTensor`` operations.

Every layer works on flattened per-sample vectors ``(batch, features)`` and
knows four things: how to run on private tensors (:meth:`Layer.forward`), the
same arithmetic on plain float64 numbers (:meth:`Layer.simulate`, for checks and
value ranges), its multiplicative depth, and how much it can amplify an error in
its inputs (:meth:`Layer.error_bound`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import polynomial as power_basis

from pets.backends.levelled import levelled_backend
from pets.compiler.approximate import Approximation, lipschitz
from pets.errors import ShapeMismatchError
from pets.polynomial import depth as polynomial_depth
from pets.slots import SparseMatrix
from pets.tensor import PrivateTensor

__all__ = ["Affine", "ConvolutionInfo", "Layer", "Polynomial", "Product", "Square"]


@dataclass
class Layer(ABC):
    """One step of a compiled model: reads values ``inputs``, writes value ``name``."""

    name: str
    inputs: tuple[str, ...]
    #: where in the torch model it comes from (module or node names)
    source: str
    #: largest ``|x|`` of each true input on the example input (for error bounds)
    input_max_abs: tuple[float, ...] = field(default=(), kw_only=True)

    @property
    @abstractmethod
    def depth(self) -> int:
        """Multiplicative levels this layer consumes."""

    @abstractmethod
    def forward(self, inputs: Sequence[PrivateTensor]) -> PrivateTensor:
        """Run on private tensors."""

    @abstractmethod
    def simulate(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        """The same arithmetic on plain float64: output and largest ``|value|`` met on the way."""

    @abstractmethod
    def error_bound(self, input_errors: Sequence[float]) -> float:
        """Worst-case output error, given worst-case errors of the inputs (same units)."""

    @abstractmethod
    def bound(self, input_bounds: Sequence[float]) -> tuple[float, float]:
        """Sound bounds, from bounds on ``|inputs|``: on ``|output|``, and on every value
        computed on the way (what a backend that tracks bounds, like CKKS, will track)."""

    def noise(self, input_noises: Sequence[float]) -> float:
        """Typical largest output error from random (zero-mean, independent) input errors
        of these sizes; the worst case (:meth:`error_bound`) unless a layer knows better."""
        return self.error_bound(input_noises)

    @property
    def matmul_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(in, out)`` of each plain-matrix product this layer computes."""
        return ()

    @property
    def kind(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        return f"{self.kind}"


@dataclass(frozen=True)
class ConvolutionInfo:
    """A convolutional Affine layer's spatial shapes and stride (for slot placements)."""

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int]


def _column_square_sums(weight: np.ndarray | SparseMatrix) -> np.ndarray:
    if isinstance(weight, SparseMatrix):
        return np.bincount(weight.cols, weights=weight.values**2, minlength=weight.shape[1])
    return np.square(weight).sum(axis=0)


def _column_abs_sums(weight: np.ndarray | SparseMatrix) -> np.ndarray:
    if isinstance(weight, SparseMatrix):
        return weight.column_abs_sums()
    return np.abs(weight).sum(axis=0)


@dataclass
class Affine(Layer):
    """``sum_j x_j @ W_j + b``: a fused run of linear torch operations.

    A run of convolutions keeps its matrix sparse (:class:`~pets.slots.SparseMatrix`,
    ``convolution`` says its shapes); ``placement`` is where a per-sample packing puts
    its outputs (``None``: the ordinary slots; see :mod:`pets.slots`).
    """

    weights: tuple[np.ndarray | SparseMatrix, ...] = field(default=(), kw_only=True)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0), kw_only=True)
    convolution: ConvolutionInfo | None = field(default=None, kw_only=True)
    placement: np.ndarray | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for weight in self.weights:  # read-only: the backend caches by identity, never rehashes
            if isinstance(weight, np.ndarray):
                weight.flags.writeable = False

    @property
    def depth(self) -> int:
        return 1

    @property
    def matmul_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((w.shape[0], w.shape[1]) for w in self.weights)

    def forward(self, inputs: Sequence[PrivateTensor]) -> PrivateTensor:
        result = _product(inputs[0], self.weights[0], self.placement)
        for tensor, weight in zip(inputs[1:], self.weights[1:], strict=True):
            result = result + _product(tensor, weight, self.placement)
        return result + self.bias if np.any(self.bias) else result

    def simulate(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        product = sum(x @ w for x, w in zip(inputs, self.weights, strict=True))
        out = np.asarray(product) + self.bias
        return out, float(max(np.max(np.abs(product), initial=0.0), np.max(np.abs(out))))

    def bound(self, input_bounds: Sequence[float]) -> tuple[float, float]:
        products = [
            b * float(np.max(_column_abs_sums(w), initial=0.0))
            for w, b in zip(self.weights, input_bounds, strict=True)
        ]
        total = sum(products)
        out = total + float(np.max(np.abs(self.bias), initial=0.0))
        return out, max(out, *products)

    def error_bound(self, input_errors: Sequence[float]) -> float:
        per_output = sum(
            _column_abs_sums(w) * e for w, e in zip(self.weights, input_errors, strict=True)
        )
        return float(np.max(per_output, initial=0.0))

    def noise(self, input_noises: Sequence[float]) -> float:
        """Independent errors add in quadrature: a column's L2 norm, not its L1 norm."""
        squares = sum(
            _column_square_sums(w) * e * e
            for w, e in zip(self.weights, input_noises, strict=True)
        )
        return float(np.sqrt(np.max(squares, initial=0.0)))

    def describe(self) -> str:
        shapes = " + ".join(f"{i}x{o}" for i, o in self.matmul_shapes)
        nonzero = sum(
            w.nnz if isinstance(w, SparseMatrix) else int(np.count_nonzero(w))
            for w in self.weights
        )
        total = sum(w.shape[0] * w.shape[1] for w in self.weights)
        if self.convolution is not None:
            c, h, w = self.convolution.in_shape
            co, ho, wo = self.convolution.out_shape
            return (f"Convolution {c}x{h}x{w} -> {co}x{ho}x{wo} (sparse, {nonzero} of {total} "
                    "weights)")
        return f"Affine {shapes} ({nonzero}/{total} weights non-zero)"


def _product(tensor: PrivateTensor, weight: np.ndarray | SparseMatrix,
             placement: np.ndarray | None) -> PrivateTensor:
    """``tensor @ weight``: through the backend's sparse product where it has one (it also
    places per-sample outputs), else as a dense matrix."""
    levelled = levelled_backend(tensor.backend)
    if levelled is None:
        dense = weight.to_dense() if isinstance(weight, SparseMatrix) else weight
        return tensor @ dense
    if tensor.ndim == 0 or tensor.shape[-1] != weight.shape[0]:
        raise ShapeMismatchError(
            f"cannot multiply a private tensor of shape {tensor.shape} by a {weight.shape[0]}x"
            f"{weight.shape[1]} matrix"
        )
    native = levelled.matmul_sparse(tensor.data, weight, placement)
    return PrivateTensor(tensor.backend, native, (*tensor.shape[:-1], weight.shape[1]))


@dataclass
class Square(Layer):
    """``x * x``."""

    @property
    def depth(self) -> int:
        return 1

    def forward(self, inputs: Sequence[PrivateTensor]) -> PrivateTensor:
        return inputs[0].square()

    def simulate(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        out = inputs[0] * inputs[0]
        return out, float(np.max(np.abs(out), initial=0.0))

    def bound(self, input_bounds: Sequence[float]) -> tuple[float, float]:
        out = input_bounds[0] * input_bounds[0]
        return out, out

    def error_bound(self, input_errors: Sequence[float]) -> float:
        (error,), (size,) = input_errors, self.input_max_abs
        return 2.0 * size * error + error * error


@dataclass
class Product(Layer):
    """``x * y`` of two private values."""

    @property
    def depth(self) -> int:
        return 1

    def forward(self, inputs: Sequence[PrivateTensor]) -> PrivateTensor:
        return inputs[0] * inputs[1]

    def simulate(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        out = inputs[0] * inputs[1]
        return out, float(np.max(np.abs(out), initial=0.0))

    def bound(self, input_bounds: Sequence[float]) -> tuple[float, float]:
        out = input_bounds[0] * input_bounds[1]
        return out, out

    def error_bound(self, input_errors: Sequence[float]) -> float:
        (ea, eb), (a, b) = input_errors, self.input_max_abs
        return a * eb + b * ea + ea * eb


@dataclass
class Polynomial(Layer):
    """``c0 + c1 x + ...`` element-wise: an exact polynomial or an activation's stand-in."""

    coefficients: tuple[float, ...] = field(default=(), kw_only=True)
    #: how it approximates an activation; ``None`` for an exact polynomial
    approximation: Approximation | None = field(default=None, kw_only=True)
    #: range its inputs are expected in (for the error bound)
    interval: tuple[float, float] = field(default=(-1.0, 1.0), kw_only=True)

    @property
    def depth(self) -> int:
        return polynomial_depth(self.coefficients)

    def forward(self, inputs: Sequence[PrivateTensor]) -> PrivateTensor:
        return inputs[0].polyval(self.coefficients)

    def simulate(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        x = inputs[0]
        out = power_basis.polyval(x, self.coefficients)
        largest = float(np.max(np.abs(x), initial=0.0))
        # every power x^k and term c_k x^k the evaluation builds
        terms = max(
            (max(1.0, abs(c)) * largest**k for k, c in enumerate(self.coefficients) if k and c),
            default=0.0,
        )
        return out, float(max(terms, np.max(np.abs(out), initial=0.0)))

    def bound(self, input_bounds: Sequence[float]) -> tuple[float, float]:
        return polynomial_bound(self.coefficients, input_bounds[0])

    def error_bound(self, input_errors: Sequence[float]) -> float:
        (error,) = input_errors
        lo, hi = self.interval
        slope = lipschitz(self.coefficients, (lo - error, hi + error))
        own = self.approximation.max_error if self.approximation else 0.0
        return slope * error + own

    def describe(self) -> str:
        if self.approximation is None:
            return f"Polynomial degree {len(self.coefficients) - 1} (exact)"
        a = self.approximation
        return (
            f"Polynomial degree {a.degree} ~ {a.function} on [{a.interval[0]:.3g}, "
            f"{a.interval[1]:.3g}] ({a.interval_source}), max error {a.max_error:.2e}"
        )


def polynomial_bound(coefficients: Sequence[float], x: float) -> tuple[float, float]:
    """Bounds on ``|p(v)|`` for ``|v| <= x`` and on every value :func:`pets.polynomial.evaluate`
    computes on the way (its powers ``x^k`` and scaled terms ``c * x^l``).

    >>> polynomial_bound([0.5, 0.0, 0.25], 2.0)
    (1.5, 4.0)
    """
    coeffs = [float(c) for c in coefficients]
    while len(coeffs) > 1 and coeffs[-1] == 0.0:
        coeffs.pop()
    largest = x
    total = 0.0
    for k, c in enumerate(coeffs):
        if k == 0 or c == 0.0:
            continue
        high = 1 << (k.bit_length() - 1)
        low = k - high
        largest = max(largest, x**k, x**high, abs(c) * x**low if low else 0.0)
        total += abs(c) * x**k
        largest = max(largest, total)
    out = total + abs(coeffs[0])
    return out, max(largest, out)
