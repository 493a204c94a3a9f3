"""The two CKKS packings of a ``(rows, cols)`` matrix of samples x features.

``batched`` (throughput): one ciphertext per feature, samples in its slots
(chunks of ``slots`` samples). A linear layer is a plain linear combination
of ciphertexts: no rotation at all, and thousands of samples per operation.

``per_sample`` (latency): one ciphertext per sample, its features repeated
with a power-of-two period over every slot. A linear layer is a
baby-step giant-step diagonal product (:mod:`.matvec`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pets.backends.ckks.arithmetic import Arithmetic
from pets.backends.ckks.matvec import Gather, MatVec, can_stage, next_power_of_two, stage
from pets.errors import LayoutMismatchError, ShapeMismatchError, UnsupportedOperationError
from pets.slots import SparseMatrix, period_of

__all__ = ["BATCHED", "PER_SAMPLE", "CKKSData", "Packing", "as_matrix"]

Matrix = np.ndarray | SparseMatrix

BATCHED = "batched"
PER_SAMPLE = "per_sample"


def as_matrix(array: np.ndarray) -> np.ndarray:
    """The packings' 2-D view: ``()`` -> ``(1, 1)``, ``(F,)`` -> ``(1, F)``, ``(B, F)`` as is."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array


@dataclass(frozen=True)
class CKKSData:
    """Native CKKS tensor: ciphertexts and how the matrix is packed in them.

    ``batched``: ``cts[chunk][col]``; ``per_sample``: ``cts[row][0]``.
    ``replicated`` marks a batched tensor whose every slot holds the value of
    row 0 (after a sum over samples), so unused slots are not zero.
    ``staged_for`` marks per-sample input laid out for its first product
    (:func:`~pets.backends.ckks.matvec.stage`, or gathered: ``gather``, several
    ciphertexts per sample): only that product may follow. ``placement`` puts the
    features of a per-sample tensor at other slots than the ordinary ones
    (:mod:`pets.slots`).
    ``bound`` is an upper bound on every ``|value|`` it holds, tracked through each
    operation without decrypting, so an operation whose result could wrap around
    the modulus is refused instead of returning garbage; ``loaded`` says the data
    came from bytes (so a decryption far beyond the bound means foreign or damaged
    ciphertexts, not an input outside a model's range).
    """

    layout: str
    rows: int
    cols: int
    cts: tuple[tuple[Any, ...], ...]
    replicated: bool = False
    staged_for: tuple[int, int] | None = None
    bound: float = 0.0
    #: made from bytes (or from an operation on such data), not encrypted here
    loaded: bool = False
    #: per-sample only: the slot of each feature (None: feature f at slot f)
    placement: np.ndarray | None = None
    #: a per-sample input gathered for a sparse first product (``staged_for`` says which);
    #: ``gather`` (the client's table) is known where it was encrypted, not where loaded
    gathered: bool = False
    gather: Gather | None = None

    def flat(self) -> list[Any]:
        return [ct for group in self.cts for ct in group]

    def occupancy(self, slots: int) -> float:
        """Share of slots that may be non-zero: a polynomial's coefficients are at most
        ``(2 / N) * sum |slot values|``, so sparse ciphertexts hold larger values."""
        if self.layout == BATCHED and not self.replicated:
            return min(self.rows, slots) / slots
        return 1.0


class Packing:
    """Encode, decode and the layout-dependent primitives."""

    def __init__(self, arith: Arithmetic, baby: int | None = None) -> None:
        self.arith = arith
        self.slots = arith.keys.params.slots
        self.matvec = MatVec(arith, self.slots, baby)

    # ---- slot vectors ----------------------------------------------------------

    def _batched_column(self, values: np.ndarray) -> np.ndarray:
        """A column chunk in slots, zero after the samples."""
        slots = np.zeros(self.slots)
        slots[: len(values)] = values
        return slots

    def _replicated_row(self, values: np.ndarray, placement: np.ndarray | None = None
                        ) -> np.ndarray:
        """A row at its placement, repeated with power-of-two period over every slot."""
        period = period_of(placement, len(values))
        block = np.zeros(period)
        block[np.arange(len(values)) if placement is None else placement] = values
        return np.tile(block, self.slots // period)

    def check_fits(self, layout: str, cols: int) -> None:
        if layout == PER_SAMPLE and next_power_of_two(cols) > self.slots:
            raise ShapeMismatchError(
                f"a per_sample ciphertext holds at most {self.slots} features, got {cols}; "
                "use layout='batched' or a larger poly_modulus_degree"
            )

    # ---- encrypt / decrypt ----------------------------------------------------

    def encrypt(self, matrix: np.ndarray, layout: str,
                first_product: tuple[int, int] | None = None,
                gather: Gather | None = None) -> CKKSData:
        rows, cols = matrix.shape
        self.check_fits(layout, cols)
        largest = float(np.max(np.abs(matrix), initial=0.0))
        if (layout == PER_SAMPLE and first_product is not None and gather is not None
                and first_product[0] == cols and gather.period <= self.slots):
            cts = tuple(
                tuple(self.arith.encrypt(v) for v in gather.stage(row, self.slots))
                for row in matrix
            )
            return CKKSData(layout, rows, cols, cts, staged_for=first_product, bound=largest,
                            gathered=True, gather=gather)
        if (layout == PER_SAMPLE and first_product is not None and first_product[0] == cols
                and can_stage(*first_product, self.slots)):
            n, m = first_product
            cts = tuple((self.arith.encrypt(stage(row, n, m, self.slots)),) for row in matrix)
            return CKKSData(layout, rows, cols, cts, staged_for=(n, m), bound=largest)
        if layout == BATCHED:
            cts = tuple(
                tuple(
                    self.arith.encrypt(self._batched_column(matrix[start : start + self.slots, c]))
                    for c in range(cols)
                )
                for start in range(0, rows, self.slots)
            )
        else:
            cts = tuple((self.arith.encrypt(self._replicated_row(row)),) for row in matrix)
        return CKKSData(layout, rows, cols, cts, bound=largest)

    def decrypt(self, data: CKKSData) -> np.ndarray:
        if data.layout == BATCHED:
            chunks = [
                np.stack([self.arith.decrypt(ct) for ct in chunk], axis=1)
                for chunk in data.cts
            ]
            stacked = np.concatenate([c[: self.slots] for c in chunks], axis=0)
            return stacked[: data.rows, : data.cols]
        if data.gathered and data.gather is None:
            raise LayoutMismatchError(
                "this input was gathered (im2col) for a model's first product where it was "
                "encrypted; decrypt it there, or run the model on it"
            )
        if data.gather is not None:  # scatter the windows back onto the image
            gather = data.gather
            place = np.arange(gather.outputs) if gather.placement is None else gather.placement
            rows = []
            for group in data.cts:
                slots = np.concatenate([self.arith.decrypt(ct) for ct in group])
                terms = np.zeros((gather.outputs, gather.ciphertexts(self.slots)
                                  * gather.blocks(self.slots)))
                for t in range(terms.shape[1]):
                    q, b = divmod(t, gather.blocks(self.slots))
                    terms[:, t] = slots[q * self.slots + b * gather.period + place]
                row = np.zeros(data.cols + 1)
                row[gather.table] = terms[:, : gather.terms]
                rows.append(row[: data.cols])
            return np.stack(rows)
        where: Any = slice(0, data.cols) if data.placement is None else data.placement
        return np.stack([self.arith.decrypt(group[0])[where] for group in data.cts])

    # ---- element-wise ----------------------------------------------------------

    @staticmethod
    def unstaged(*tensors: CKKSData) -> None:
        for t in tensors:
            if t.staged_for is not None:
                n, m = t.staged_for
                raise LayoutMismatchError(
                    f"this per_sample tensor is packed for its first product with a {n}x{m} "
                    "matrix (PrivateModel.encrypt does that); run the model on it, or encrypt "
                    "with backend.encrypt(x, layout='per_sample') for other operations"
                )

    def map_pairs(self, a: CKKSData, b: CKKSData, op: Any) -> CKKSData:
        self.unstaged(a, b)
        cts = tuple(
            tuple(op(x, y) for x, y in zip(ga, gb, strict=True))
            for ga, gb in zip(a.cts, b.cts, strict=True)
        )
        return replace(a, cts=cts, replicated=a.replicated and b.replicated)

    def map_plain(self, a: CKKSData, plain: np.ndarray, op: Any) -> CKKSData:
        """``op(ct, slot_vector)`` for every ciphertext, the plain matrix packed to match."""
        self.unstaged(a)
        full = np.broadcast_to(plain, (a.rows, a.cols))
        if a.layout == BATCHED:
            cts = []
            for chunk_index, chunk in enumerate(a.cts):
                block = full[chunk_index * self.slots : (chunk_index + 1) * self.slots]
                cts.append(
                    tuple(
                        op(ct, np.full(self.slots, block[0, c]) if a.replicated
                           else self._batched_column(block[:, c]))
                        for c, ct in enumerate(chunk)
                    )
                )
            return replace(a, cts=tuple(cts))
        return replace(
            a,
            cts=tuple((op(group[0], self._replicated_row(full[r], a.placement)),)
                      for r, group in enumerate(a.cts)),
        )

    # ---- selecting and joining ----------------------------------------------------

    def take(self, a: CKKSData, index: Any, shape: tuple[int, ...]) -> CKKSData:
        """``a[index]`` where it selects whole ciphertexts: rows of a per-sample tensor,
        columns of a batched one."""
        self.unstaged(a)
        key = index if isinstance(index, tuple) else (index,)
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (len(shape) - len(key))
        if len(shape) == 2:
            row_key, col_key = key
        elif len(shape) == 1:
            row_key, col_key = (slice(None), key[0]) if a.rows == 1 else (key[0], slice(None))
        else:
            return a
        rows = np.atleast_1d(np.arange(a.rows)[row_key])
        cols = np.atleast_1d(np.arange(a.cols)[col_key])
        whole_rows, whole_cols = len(rows) == a.rows, len(cols) == a.cols
        if a.layout == PER_SAMPLE and whole_cols:
            return replace(a, rows=len(rows), cts=tuple(a.cts[r] for r in rows))
        in_order = len(rows) == a.rows and bool(np.all(rows == np.arange(a.rows)))
        if a.layout == BATCHED and whole_rows and (a.replicated or in_order):
            cts = tuple(tuple(chunk[c] for c in cols) for chunk in a.cts)
            return replace(a, cols=len(cols), cts=cts)
        what = (
            "per_sample tensor selects whole rows" if a.layout == PER_SAMPLE
            else "batched tensor selects whole columns"
        )
        raise UnsupportedOperationError(
            f"the ckks backend cannot index a {a.layout} tensor by {index!r}: a {what}"
            " (ciphertexts); other selections move values between slots. Encrypt with "
            f"layout={'batched' if a.layout == PER_SAMPLE else 'per_sample'!r} or index the "
            "plain data before encrypting"
        )

    def concat(self, parts: list[CKKSData], axis: int, shapes: list[tuple[int, ...]]) -> CKKSData:
        """Join batched tensors by columns, or per-sample tensors by rows (whole ciphertexts)."""
        first = parts[0]
        layouts = {p.layout for p in parts}
        if len(layouts) > 1:
            raise LayoutMismatchError("concat needs tensors of one layout; encrypt all alike")
        self.unstaged(*parts)
        along_cols = axis == len(shapes[0]) - 1 and len(shapes[0]) == 2
        if first.layout == BATCHED and along_cols:
            flat = self.arith.align(*(ct for p in parts for ct in p.flat()))
            it = iter(flat)
            groups = [[tuple(next(it) for _ in chunk) for chunk in p.cts] for p in parts]
            cts = tuple(sum((g[i] for g in groups), ()) for i in range(len(first.cts)))
            return CKKSData(BATCHED, first.rows, sum(p.cols for p in parts), cts,
                            all(p.replicated for p in parts))
        if first.layout == PER_SAMPLE and axis == 0 and len(shapes[0]) == 2 and all(
            _same_placement(p.placement, first.placement) for p in parts
        ):
            flat = self.arith.align(*(ct for p in parts for ct in p.flat()))
            return CKKSData(PER_SAMPLE, sum(p.rows for p in parts), first.cols,
                            tuple((ct,) for ct in flat), placement=first.placement)
        raise UnsupportedOperationError(
            f"the ckks backend cannot join {first.layout} tensors along axis {axis}: it joins "
            "batched tensors by columns (axis 1) and per_sample tensors by rows (axis 0) only; "
            "encrypt the blocks with the other layout, or join the plain data before encrypting"
        )

    # ---- reductions and products -------------------------------------------------

    def sum_rows(self, a: CKKSData) -> CKKSData:
        self.unstaged(a)
        if a.layout == PER_SAMPLE:
            return CKKSData(a.layout, 1, a.cols, ((self.arith.add_many(a.flat()),),),
                            placement=a.placement)
        if a.replicated:
            columns = list(a.cts[0])
        else:
            columns = [
                self.arith.add_many(
                    [self.arith.sum_slots(chunk[c], self.slots) for chunk in a.cts]
                )
                for c in range(a.cols)
            ]
        return CKKSData(a.layout, 1, a.cols, (tuple(columns),), replicated=True)

    def sum_cols(self, a: CKKSData) -> CKKSData:
        self.unstaged(a)
        if a.layout == BATCHED:
            cts = tuple((self.arith.add_many(list(chunk)),) for chunk in a.cts)
            return CKKSData(a.layout, a.rows, 1, cts, a.replicated)
        if a.placement is not None:
            raise UnsupportedOperationError(
                "the ckks backend cannot sum the features of this per_sample tensor: a "
                "compiled convolution left them at scattered slots, with other values between "
                "them; multiply by a matrix of ones instead (x @ numpy.ones((n, 1)))"
            )
        period = next_power_of_two(a.cols)
        cts = tuple((self.arith.sum_slots(group[0], period),) for group in a.cts)
        return CKKSData(a.layout, a.rows, 1, cts)

    def matmul(self, a: CKKSData, matrix: Matrix,
               placement: np.ndarray | None = None) -> CKKSData:
        """``a @ matrix`` (dense or sparse); a per-sample result sits at ``placement``."""
        out_cols = matrix.shape[1]
        if a.layout == BATCHED:
            chunks = []
            columns_of = _columns(matrix)
            for chunk in a.cts:
                level = self.arith.below(self.arith.level(chunk[0]), "a matrix product")
                columns = [
                    self.arith.linear_combination([chunk[i] for i in rows], weights)
                    if len(rows) else None
                    for rows, weights in columns_of
                ]
                chunks.append(tuple(self._or_zero(ct, level) for ct in columns))
            return CKKSData(a.layout, a.rows, out_cols, tuple(chunks), a.replicated)
        if placement is not None and period_of(placement, out_cols) > self.slots:
            placement = None
        self.check_fits(PER_SAMPLE, max(a.cols, out_cols))
        if a.staged_for not in (None, matrix.shape):
            self.unstaged(a)
        rows = []
        for group in a.cts:
            level = self.arith.below(self.arith.level(group[0]), "a matrix product")
            if a.gathered:
                gather = Gather.of(matrix, placement)
                if len(group) != gather.ciphertexts(self.slots):
                    raise LayoutMismatchError(
                        f"this input was gathered into {len(group)} ciphertexts per sample for "
                        f"a first product needing {gather.ciphertexts(self.slots)}; encrypt it "
                        "with this model's model.encrypt(x) (or the requirements it describes)"
                    )
                ct = self.matvec.apply_gathered(group, matrix, gather)
            elif a.staged_for is not None:
                assert isinstance(matrix, np.ndarray)
                ct = self.matvec.apply_staged(group[0], matrix)
                placement = None
            else:
                ct = self.matvec.apply(group[0], matrix, a.placement, placement)
            rows.append((self._or_zero(ct, level),))
        return CKKSData(a.layout, a.rows, out_cols, tuple(rows), placement=placement)

    def _or_zero(self, ct: Any, level: Any) -> Any:
        return self.arith.zero_like(level) if ct is None else ct


def _columns(matrix: Matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each column's non-zero rows and weights."""
    if isinstance(matrix, SparseMatrix):
        order = np.lexsort((matrix.rows, matrix.cols))
        rows, cols, values = matrix.rows[order], matrix.cols[order], matrix.values[order]
        bounds = np.searchsorted(cols, np.arange(matrix.shape[1] + 1))
        return [(rows[bounds[j]:bounds[j + 1]], values[bounds[j]:bounds[j + 1]])
                for j in range(matrix.shape[1])]
    return [(np.arange(matrix.shape[0]), matrix[:, j]) for j in range(matrix.shape[1])]


def _same_placement(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))
    )
