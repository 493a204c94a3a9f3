"""Encrypted vector times plain matrix by the diagonal method, baby-step giant-step.

(Shown here for the ordinary placement, feature ``f`` at slot ``f``; a tensor may
sit on another placement (:mod:`pets.slots`), and a product then works on the
slots its features sit at: entry ``W[a, b]`` moves slot ``place_in[a]`` to slot
``place_out[b]``. Only the non-zero diagonals are multiplied, so a convolution
costs a few dozen diagonals however large its image.)

A per-sample ciphertext holds one sample ``x`` (``n`` values) repeated with
period ``p_in = 2**ceil(log2 n)`` over every slot. For ``y = x @ W`` (``W`` is
``n x m``) let ``d = max(p_in, p_out)``, ``K = min(p_in, p_out)`` and the
``K`` generalised diagonals

    diag_k[s] = W[(s + k) mod p_in, s mod p_out]   (0 outside W),   k < K

Then ``z = sum_k diag_k * rot(x, k)`` already is ``y`` repeated with period
``p_out`` when the layer widens (``p_in <= p_out``); when it narrows, summing
``z`` over slots ``p_out`` apart (``log2(d / p_out)`` rotations) finishes it
(the hybrid method of GAZELLE). Splitting ``k = g*j + i`` turns the ``K``
rotations into ``g - 1`` baby steps of ``x`` and ``K/g - 1`` giant steps of
partial sums (Halevi-Shoup with BSGS):

    z = sum_j rot( sum_i rot(diag_{gj+i}, -gj) * rot(x, i), gj )

The rotated diagonals are plaintexts made once per (matrix, level) and kept in a
bounded LRU cache (:mod:`.plaincache`). Baby steps are taken one after another
and giant steps Horner style, so every rotation is by a difference of steps,
and each is made of power-of-two rotations (:func:`pets.slots.signed_steps`):
a model needs at most ``2 log2(N/2)`` rotation keys.

**Gathered input** (a sparse first product, e.g. a convolution). With ``T``
non-zero weights per output, the client sends ``T`` vectors ``X_t[j] = x[i_t(j)]``
(its own image's windows: im2col), packed ``slots / p_out`` to a ciphertext;
the product is one plaintext multiplication per ciphertext and ``log2`` of the
packing factor rotations.

**Staged input** (the first product of a model). The client can lay out its
own sample any way it likes for free, so for the first product it puts
``rot(x, b)`` in slot block ``b`` (blocks of ``d`` slots, ``d * d <= slots``).
One plaintext multiplication by the diagonals laid out the same way, then a
rotate-and-sum over the blocks (``log2(slots / d)`` rotations by multiples of
``d``) gives ``y`` in the ordinary repeated layout: 6 rotations instead of 14
for a 64 x 32 layer at N=8192.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pets.backends.ckks.arithmetic import Arithmetic, negligible
from pets.backends.ckks.plaincache import PlaintextCache, matrix_key
from pets.slots import (
    DiagonalPlan,
    SparseMatrix,
    diagonal_coordinates,
    gather_terms,
    key_steps,
    next_power_of_two,
    period_of,
    plan_diagonals,
)

__all__ = ["Gather", "MatVec", "MatVecPlan", "next_power_of_two", "plan_matvec", "product_plan"]

Matrix = np.ndarray | SparseMatrix


@dataclass(frozen=True)
class MatVecPlan:
    """Geometry of one product: periods, baby-step size and the rotations it uses."""

    n: int
    m: int
    period_in: int
    period_out: int
    d: int
    baby: int

    @property
    def diagonals(self) -> int:
        return min(self.period_in, self.period_out)

    @property
    def giant(self) -> int:
        return self.diagonals // self.baby

    @property
    def folds(self) -> list[int]:
        """Strides of the final rotate-and-sum of a narrowing layer (none otherwise)."""
        return [self.period_out << j for j in range((self.d // self.period_out).bit_length() - 1)]

    @property
    def steps(self) -> set[int]:
        """Rotation keys used: 1 (baby steps, one after another), the baby-step size
        (giant steps, Horner style) and the folds: powers of two."""
        return ({1} if self.baby > 1 else set()) | ({self.baby} if self.giant > 1 else set()) | (
            set(self.folds)
        )

    @property
    def rotations(self) -> int:
        """Rotations one product takes (at most: all-zero diagonal rows are skipped)."""
        return self.baby - 1 + self.giant - 1 + len(self.folds)


def plan_matvec(n: int, m: int, baby: int | None = None) -> MatVecPlan:
    period_in, period_out = next_power_of_two(n), next_power_of_two(m)
    d = max(period_in, period_out)
    k = min(period_in, period_out)
    if baby is None:
        baby = next_power_of_two(math.isqrt(k - 1) + 1) if k > 1 else 1
    return MatVecPlan(n, m, period_in, period_out, d, min(baby, k))


def staged_steps(d: int, slots: int) -> set[int]:
    """Rotations that sum the ``slots / d`` blocks of a staged product."""
    return {d << j for j in range(max(0, (slots // d).bit_length() - 1))}


def can_stage(n: int, m: int, slots: int) -> bool:
    d = plan_matvec(n, m).d
    return d * d <= slots


def stage(row: np.ndarray, n: int, m: int, slots: int) -> np.ndarray:
    """The client's slot vector for ``row`` when its first product is ``n x m``."""
    plan = plan_matvec(n, m)
    d = plan.d
    base = np.zeros(d)
    base[: len(row)] = row
    base = np.tile(base[: plan.period_in], d // plan.period_in)
    blocks = np.zeros(slots)
    index = (np.arange(d)[None, :] + np.arange(d)[:, None]) % d  # block b, slot s -> (s + b) % d
    blocks[: d * d] = base[index].ravel()
    return blocks


def _entries(matrix: Matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(matrix, SparseMatrix):
        return matrix.rows, matrix.cols, matrix.values
    rows, cols = np.nonzero(matrix)
    return rows, cols, matrix[rows, cols]


def product_plan(matrix: Matrix, place_in: np.ndarray | None, place_out: np.ndarray | None,
                 baby: int | None = None) -> tuple[DiagonalPlan, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """The plan of ``x @ matrix`` between two placements, and each entry's diagonal, slot
    and weight."""
    n, m = matrix.shape
    rows, cols, values = _entries(matrix)
    slot_in = rows if place_in is None else place_in[rows]
    slot_out = cols if place_out is None else place_out[cols]
    period_in, period_out = period_of(place_in, n), period_of(place_out, m)
    k, s = diagonal_coordinates(slot_in, slot_out, period_in, period_out)
    plan = plan_diagonals(period_in, period_out, np.unique(k).tolist(), baby)
    return plan, k, s, np.asarray(values, dtype=np.float64)


def product_steps(plan: DiagonalPlan, slots: int) -> set[int]:
    """The power-of-two rotation keys a product uses."""
    return key_steps(plan.rotation_steps(), slots)


@dataclass(frozen=True)
class Gather:
    """How a client packs a sample for a sparse first product (see the module docstring).

    ``table[j, t]`` is the input feature of output ``j``'s ``t``-th term (-1: none);
    output ``j`` lands at slot ``placement[j]`` of blocks of ``period`` slots.
    """

    table: np.ndarray
    placement: np.ndarray | None

    @property
    def outputs(self) -> int:
        return int(self.table.shape[0])

    @property
    def terms(self) -> int:
        return int(self.table.shape[1])

    @property
    def period(self) -> int:
        return period_of(self.placement, self.outputs)

    def blocks(self, slots: int) -> int:
        """Terms per ciphertext."""
        return max(1, slots // self.period)

    def ciphertexts(self, slots: int) -> int:
        return -(-self.terms // self.blocks(slots))

    def steps(self, slots: int) -> set[int]:
        return {self.period << j for j in range((self.blocks(slots)).bit_length() - 1)}

    @classmethod
    def of(cls, matrix: Matrix, placement: np.ndarray | None) -> Gather:
        """The gather table of ``matrix``'s non-zero pattern (terms in input order)."""
        return cls(gather_terms(matrix)[0], placement)

    def weights(self, matrix: Matrix) -> np.ndarray:
        """``weights[j, t]``: the weight of output ``j``'s ``t``-th term."""
        return gather_terms(matrix)[1]

    def lay_out(self, terms: np.ndarray, slots: int) -> list[np.ndarray]:
        """Per-output term values ``(outputs, terms)`` as the slot vectors of the ciphertexts."""
        period, blocks = self.period, self.blocks(slots)
        place = np.arange(self.outputs) if self.placement is None else self.placement
        vectors = []
        for first in range(0, self.terms, blocks):
            vector = np.zeros(slots)
            for b, t in enumerate(range(first, min(first + blocks, self.terms))):
                vector[b * period + place] = terms[:, t]
            vectors.append(vector)
        return vectors

    def stage(self, row: np.ndarray, slots: int) -> list[np.ndarray]:
        """The client's slot vectors for one sample ``row`` (its im2col windows)."""
        padded = np.append(np.asarray(row, dtype=np.float64), 0.0)
        return self.lay_out(padded[self.table], slots)  # -1 picks the appended 0


class MatVec:
    """Per-sample ``x @ W`` for one key set, caching encoded diagonals (bounded LRU)."""

    def __init__(self, arithmetic: Arithmetic, slots: int, baby: int | None = None,
                 cache: PlaintextCache | None = None) -> None:
        self.arith = arithmetic
        self.slots = slots
        self.baby = baby
        self.cache = cache if cache is not None else PlaintextCache()

    def plan(self, n: int, m: int) -> MatVecPlan:
        return plan_matvec(n, m, self.baby)

    def _plaintext_bytes(self, level: Any, count: int) -> int:
        return count * 2 * self.slots * (level.index + 1) * 8

    def _encoded_diagonals(
        self, matrix: Matrix, place_in: np.ndarray | None, place_out: np.ndarray | None, ct: Any
    ) -> tuple[DiagonalPlan, dict[tuple[int, int], Any]]:
        level = self.arith.level(ct)
        scale = self.arith.factor_scale(ct)
        keys = [matrix_key(matrix if isinstance(matrix, np.ndarray) else matrix.values)]
        keys += [matrix_key(p) for p in (place_in, place_out) if p is not None]
        key = ("diagonals", tuple(k for k, _ in keys), place_in is None, place_out is None,
               self.baby, level.index, scale)
        guard = keys[0][1]

        def make() -> tuple[DiagonalPlan, dict[tuple[int, int], Any]]:
            plan, k, s, values = product_plan(matrix, place_in, place_out, self.baby)
            index = {offset: row for row, offset in enumerate(plan.offsets)}
            table = np.zeros((len(plan.offsets), plan.d))
            table[np.array([index[int(v)] for v in k], dtype=np.int64), s] = values
            repeat = self.slots // plan.d
            encoded: dict[tuple[int, int], Any] = {}
            for row, offset in enumerate(plan.offsets):
                giant, baby = divmod(offset, plan.baby)
                shifted = np.tile(np.roll(table[row], plan.baby * giant), repeat)
                if not negligible(shifted, scale):
                    encoded[(giant, baby)] = self.arith.encode(shifted, level, scale)
            return plan, encoded

        return self.cache.get_or_make(  # type: ignore[no-any-return]
            key, guard, make, lambda made: self._plaintext_bytes(level, len(made[1]))
        )

    def apply(self, ct: Any, matrix: Matrix, place_in: np.ndarray | None = None,
              place_out: np.ndarray | None = None) -> Any:
        """``x @ matrix`` for one per-sample ciphertext, between two placements.

        Baby steps rotate one after another, giant steps are summed Horner style
        (each partial sum rotated by the baby size times the gap to the next).
        """
        plan, encoded = self._encoded_diagonals(matrix, place_in, place_out, ct)
        self.arith.require_rotations(product_steps(plan, self.slots))
        if not encoded:
            return None
        babies = sorted({i for _, i in encoded})
        rotated: dict[int, Any] = {}
        current, at = ct, 0
        for i in babies:
            current = self.arith.rotate(current, i - at)
            rotated[i], at = current, i
        inner: dict[int, Any] = {}
        for (giant, baby), plain in sorted(encoded.items()):
            term = self.arith.multiply_encoded(rotated[baby], plain, rescale=False)
            if giant in inner:
                self.arith.ev.add_inplace(inner[giant], term)
            else:
                inner[giant] = term
        giants = sorted(inner)
        out = inner[giants[-1]]
        for lower, upper in zip(reversed(giants[:-1]), reversed(giants[1:]), strict=True):
            out = self.arith.rotate(out, plan.baby * (upper - lower))
            self.arith.ev.add_inplace(out, inner[lower])
        out = self.arith.rotate(out, plan.baby * giants[0])
        self.arith.ev.rescale_to_next_inplace(out)
        for stride in plan.folds:  # narrowing: add up the d / p_out partial outputs
            out = self.arith.add(out, self.arith.rotate(out, stride))
        return out

    def apply_staged(self, ct: Any, matrix: np.ndarray) -> Any:
        """``x @ matrix`` for a ciphertext laid out by :func:`stage`: one product, log rotations."""
        plan = self.plan(*matrix.shape)
        d = plan.d
        self.arith.require_rotations(staged_steps(d, self.slots))
        level = self.arith.level(ct)
        scale = self.arith.factor_scale(ct)
        key, guard = matrix_key(matrix)

        def make() -> Any:
            padded = np.zeros((d, plan.period_out))
            padded[: plan.n, : plan.m] = matrix
            s = np.arange(d)
            diagonals = np.zeros(self.slots)
            diagonals[: d * d] = np.concatenate(
                [padded[(s + b) % d, s % plan.period_out] for b in range(d)]
            )
            return self.arith.encode(diagonals, level, scale)

        plain = self.cache.get_or_make(("staged", key, level.index, scale), guard, make,
                                       self._plaintext_bytes(level, 1))
        out = self.arith.multiply_encoded(ct, plain, rescale=False)
        out = self.arith.sum_slots_by(out, d, self.slots)
        self.arith.ev.rescale_to_next_inplace(out)
        return out

    def apply_gathered(self, cts: tuple[Any, ...], matrix: Matrix, gather: Gather) -> Any:
        """``x @ matrix`` for the ciphertexts :meth:`Gather.stage` laid out."""
        level = self.arith.level(cts[0])
        scale = self.arith.factor_scale(cts[0])
        key, guard = matrix_key(matrix if isinstance(matrix, np.ndarray) else matrix.values)

        def make() -> list[Any]:
            vectors = gather.lay_out(gather.weights(matrix), self.slots)
            return [None if negligible(v, scale) else self.arith.encode(v, level, scale)
                    for v in vectors]

        plains = self.cache.get_or_make(
            ("gathered", key, level.index, scale), guard, make,
            self._plaintext_bytes(level, gather.ciphertexts(self.slots)),
        )
        self.arith.require_rotations(gather.steps(self.slots))
        out = None
        for ct, plain in zip(cts, plains, strict=True):
            if plain is None:
                continue
            term = self.arith.multiply_encoded(ct, plain, rescale=False)
            if out is None:
                out = term
            else:
                self.arith.ev.add_inplace(out, term)
        if out is None:
            return None
        out = self.arith.sum_slots_by(out, gather.period, self.slots)
        self.arith.ev.rescale_to_next_inplace(out)
        return out
