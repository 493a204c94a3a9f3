"""Slot geometry of per-sample packings: placements, periods, diagonals, rotation steps.

Pure numpy, shared by the compiler (which plans what a model will rotate, so
the key holder can make the keys) and the CKKS backend (which does it).

A per-sample ciphertext holds one sample. Feature ``f`` sits at slot
``placement[f]`` of a block of ``period`` slots (a power of two), and the block
repeats over every slot. The *ordinary* placement puts feature ``f`` at slot
``f``; a convolution's output may instead sit on a *canvas* (below), where
strided layers leave their outputs at the positions of their inputs instead of
gathering them, so that every later product stays a few diagonals.

A product ``y = x @ W`` moves the value at input slot ``i`` to output slot
``j`` for each non-zero ``W``: with ``K = min(p_in, p_out)`` generalised
diagonals (:mod:`pets.backends.ckks.matvec`), the entry lies on diagonal
``k = (i - j) mod K``; a product costs one plaintext multiplication per
non-zero diagonal and about one rotation per distinct baby and giant step.

>>> ordinary_period(10)
16
>>> canvas_placement(channels=8, height=4, width=4, spacing=2, canvas=(8, 8)).tolist()[:6]
[0, 2, 4, 6, 16, 18]
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DiagonalPlan",
    "SparseMatrix",
    "canvas_placement",
    "decode_ints",
    "diagonal_coordinates",
    "encode_ints",
    "gather_terms",
    "key_steps",
    "next_power_of_two",
    "ordinary_period",
    "period_of",
    "plan_diagonals",
    "signed_steps",
]


def next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def ordinary_period(features: int) -> int:
    """Period of ``features`` values in the ordinary placement."""
    return next_power_of_two(features)


def period_of(placement: np.ndarray | None, features: int) -> int:
    """The period a placement needs (the ordinary one when ``placement`` is ``None``)."""
    if placement is None:
        return ordinary_period(features)
    return next_power_of_two(int(np.max(placement, initial=0)) + 1)


def canvas_placement(
    *, channels: int, height: int, width: int, spacing: int, canvas: tuple[int, int],
) -> np.ndarray | None:
    """Slots of a ``(channels, height, width)`` tensor on a ``canvas`` (``Hc x Wc`` grid per
    channel block) where rows and columns sit ``spacing`` canvas cells apart.

    Channels are multiplexed: the ``spacing**2`` positions of each cell hold
    ``spacing**2`` channels, so a strided layer's output needs no more slots than
    its input. ``None`` if the tensor does not fit the canvas.
    """
    hc, wc = canvas
    if height * spacing > hc or width * spacing > wc or spacing < 1:
        return None
    c = np.arange(channels)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    cell = spacing * spacing
    block, within = c // cell, c % cell
    row = y * spacing + within // spacing
    slots = block * (hc * wc) + row * wc + (x * spacing + within % spacing)
    return np.asarray(slots, dtype=np.int64).reshape(-1)


def diagonal_coordinates(
    rows: np.ndarray, cols: np.ndarray, period_in: int, period_out: int
) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal ``k`` and slot ``s`` of each entry moving input slot ``rows`` to output slot
    ``cols`` (see :mod:`pets.backends.ckks.matvec`)."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    count = min(period_in, period_out)
    k = (rows - cols) % count
    if period_out >= period_in:
        return k, cols
    return k, (rows - k) % period_in


@dataclass(frozen=True)
class DiagonalPlan:
    """How one product walks its non-zero diagonals: ``k = baby * giant + i``."""

    period_in: int
    period_out: int
    offsets: tuple[int, ...]
    baby: int

    @property
    def d(self) -> int:
        return max(self.period_in, self.period_out)

    @property
    def babies(self) -> list[int]:
        return sorted({k % self.baby for k in self.offsets})

    @property
    def giants(self) -> list[int]:
        return sorted({k // self.baby for k in self.offsets})

    @property
    def folds(self) -> list[int]:
        """Strides of the final rotate-and-sum of a narrowing product (none otherwise)."""
        count = (self.d // self.period_out).bit_length() - 1
        return [self.period_out << j for j in range(count)]

    def rotation_steps(self) -> list[int]:
        """Every rotation the product does, in order of use (before splitting into keys)."""
        steps = [b - a for a, b in itertools.pairwise([0, *self.babies]) if b != a]
        giants = self.giants
        steps += [self.baby * (b - a) for a, b in itertools.pairwise(giants)]
        if giants and giants[0]:
            steps.append(self.baby * giants[0])
        return steps + self.folds


def plan_diagonals(period_in: int, period_out: int, offsets: Iterable[int],
                   baby: int | None = None) -> DiagonalPlan:
    """The baby-step size (a power of two) that needs the fewest rotations for ``offsets``."""
    ks = tuple(sorted({int(k) for k in offsets}))
    if baby is not None:
        return DiagonalPlan(period_in, period_out, ks, baby)
    count = min(period_in, period_out)
    best: DiagonalPlan | None = None
    b = 1
    while b <= count:
        plan = DiagonalPlan(period_in, period_out, ks, b)
        cost = len(plan.babies) + len(plan.giants)
        if best is None or cost < len(best.babies) + len(best.giants):
            best = plan
        b *= 2
    assert best is not None
    return best


def signed_steps(step: int, slots: int) -> list[int]:
    """``step`` as a sum of ``+-2**j`` (non-adjacent form, fewest terms), each as a left
    rotation in ``[1, slots)``: the power-of-two keys any rotation is built from.

    >>> signed_steps(7, 4096)   # 8 - 1
    [8, 4095]
    """
    step %= slots
    if step > slots // 2:
        step -= slots
    out: list[int] = []
    bit = 1
    while step:
        if step & 1:
            digit = 2 - (step & 3)  # +1 or -1
            out.append((digit * bit) % slots)
            step -= digit
        step >>= 1
        bit <<= 1
    return sorted(out)


def key_steps(steps: Sequence[int], slots: int) -> set[int]:
    """The power-of-two rotation keys that ``steps`` decompose into."""
    return {s for step in steps for s in signed_steps(step, slots)}


@dataclass(frozen=True, eq=False)
class SparseMatrix:
    """An ``n x m`` matrix as its non-zero entries (``x @ M`` with ``x`` of shape ``(B, n)``).

    A convolution's matrix is mostly zeros; stored this way its memory grows
    with kernels and channels, not with input size times output size.

    >>> m = SparseMatrix.from_dense(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    >>> m.nnz, m.shape, (np.ones((1, 3)) @ m).tolist()
    (3, (3, 2), [[4.0, 2.0]])
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    __array_ufunc__ = None  # ``ndarray @ SparseMatrix`` calls __rmatmul__

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> SparseMatrix:
        rows, cols = np.nonzero(matrix)
        return cls(rows.astype(np.int64), cols.astype(np.int64),
                   np.asarray(matrix[rows, cols], dtype=np.float64),
                   (int(matrix.shape[0]), int(matrix.shape[1])))

    @property
    def nnz(self) -> int:
        return len(self.values)

    def column_abs_sums(self) -> np.ndarray:
        return np.bincount(self.cols, weights=np.abs(self.values), minlength=self.shape[1])

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape)
        np.add.at(dense, (self.rows, self.cols), self.values)
        return dense

    def __rmatmul__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        transposed = self._scipy_transposed
        if transposed is None:
            return self._rmatmul_numpy(x)
        flat = x.reshape(-1, self.shape[0])
        out = np.asarray(transposed @ flat.T).T  # scipy's compiled sparse product
        return out.reshape(*x.shape[:-1], self.shape[1])

    @functools.cached_property
    def _scipy_transposed(self) -> Any:
        """``M.T`` as a scipy CSR matrix (scipy is optional: numpy does it, ~20x slower)."""
        try:
            import scipy.sparse
        except ImportError:  # pragma: no cover
            return None
        return scipy.sparse.csr_matrix((self.values, (self.cols, self.rows)),
                                       shape=(self.shape[1], self.shape[0]))

    def _rmatmul_numpy(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((*x.shape[:-1], self.shape[1]))
        flat = x.reshape(-1, self.shape[0])
        result = out.reshape(-1, self.shape[1])
        order = np.argsort(self.cols, kind="stable")
        rows, cols, values = self.rows[order], self.cols[order], self.values[order]
        bounds = np.searchsorted(cols, np.arange(self.shape[1] + 1))
        present = bounds[1:] > bounds[:-1]
        if not len(values):
            return out
        starts = bounds[:-1][present]  # strictly increasing: one run per non-empty column
        step = max(1, (1 << 22) // len(values))  # about 32 MiB of terms at a time
        for start in range(0, len(flat), step):
            terms = flat[start : start + step][:, rows] * values
            result[start : start + step, present] = np.add.reduceat(terms, starts, axis=1)
        return out


def encode_ints(values: np.ndarray) -> str:
    """Integers as compact JSON-safe text (zlib-compressed int32, base64)."""
    import base64
    import zlib

    return base64.b64encode(zlib.compress(np.asarray(values, dtype="<i4").tobytes(), 6)).decode()


def decode_ints(text: str, count: int, *, low: int = -1, high: int = 1 << 30) -> np.ndarray:
    """The inverse of :func:`encode_ints`, refusing anything but ``count`` integers in
    ``[low, high)`` (raises ``ValueError``)."""
    import base64
    import binascii
    import zlib

    if not isinstance(text, str) or not 0 <= count <= 1 << 24:
        raise ValueError("encoded integers must be text, and a sane count")
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(text, validate=True), 4 * count + 1)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"encoded integers are malformed ({exc})") from exc
    if len(raw) != 4 * count:
        raise ValueError(f"encoded integers hold {len(raw) // 4} values, not {count}")
    values = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    if len(values) and (values.min() < low or values.max() >= high):
        raise ValueError(f"encoded integers fall outside [{low}, {high})")
    return values


def gather_terms(matrix: np.ndarray | SparseMatrix) -> tuple[np.ndarray, np.ndarray]:
    """``(table, weights)``: for each output ``j``, its non-zero terms' input features
    ``table[j, t]`` (-1 where it has fewer) and weights, in input order: what a client
    gathers (im2col) for a sparse first product, and what the server multiplies them by."""
    if isinstance(matrix, SparseMatrix):
        rows, cols, values = matrix.rows, matrix.cols, matrix.values
    else:
        rows, cols = np.nonzero(matrix)
        values = matrix[rows, cols]
    order = np.lexsort((rows, cols))
    rows, cols, values = rows[order], cols[order], values[order]
    counts = np.bincount(cols, minlength=matrix.shape[1])
    terms = max(1, int(counts.max(initial=0)))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    position = np.arange(len(rows)) - starts[cols]
    table = np.full((matrix.shape[1], terms), -1, dtype=np.int64)
    weights = np.zeros((matrix.shape[1], terms))
    table[cols, position] = rows
    weights[cols, position] = values
    return table, weights
