"""Encrypted vector times plain matrix by the diagonal method, baby-step giant-step.

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
bounded LRU cache (:mod:`.plaincache`).

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

__all__ = ["MatVecPlan", "next_power_of_two", "plan_matvec"]


def next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


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
        (giant steps, Horner style) and the folds."""
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

    def _diagonals(self, matrix: np.ndarray, plan: MatVecPlan, ct: Any) -> list[list[Any]]:
        level = self.arith.level(ct)
        scale = self.arith.factor_scale(ct)
        key, guard = matrix_key(matrix)

        def make() -> list[list[Any]]:
            s = np.arange(self.slots)
            padded = np.zeros((plan.period_in, plan.period_out))
            padded[: plan.n, : plan.m] = matrix
            col = s % plan.period_out
            blocks: list[list[Any]] = []
            for j in range(plan.giant):
                row: list[Any] = []
                for i in range(plan.baby):
                    k = plan.baby * j + i
                    diag = padded[(s + k) % plan.period_in, col]
                    shifted = np.roll(diag, plan.baby * j)  # rot(diag, -g*j)
                    row.append(
                        None if negligible(shifted, scale)
                        else self.arith.encode(shifted, level, scale)
                    )
                blocks.append(row)
            return blocks

        return self.cache.get_or_make(  # type: ignore[no-any-return]
            ("bsgs", key, plan.baby, level.index, scale), guard, make,
            self._plaintext_bytes(level, plan.diagonals),
        )

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

    def apply(self, ct: Any, matrix: np.ndarray) -> Any:
        """``x @ matrix`` for one per-sample ciphertext; output period ``p_out``.

        Baby steps rotate by 1 one after another, and the giant steps are summed
        Horner-style, each partial sum rotated by the baby-step size: the same number
        of rotations as rotating each term by its own step, with two rotation keys
        instead of ``baby + giant`` (see :attr:`MatVecPlan.steps`).
        """
        plan = self.plan(*matrix.shape)
        self.arith.require_rotations(plan.steps)  # one clear error naming every missing key
        diagonals = self._diagonals(matrix, plan, ct)
        used = [i for i in range(plan.baby) if any(row[i] is not None for row in diagonals)]
        baby: dict[int, Any] = {0: ct}
        current = ct
        for i in range(1, max(used, default=0) + 1):
            current = self.arith.rotate(current, 1)
            baby[i] = current
        inner: list[Any] = []
        for row in diagonals:
            terms = [
                self.arith.multiply_encoded(baby[i], plain, rescale=False)
                for i, plain in enumerate(row)
                if plain is not None
            ]
            total = terms[0] if terms else None
            for term in terms[1:]:
                self.arith.ev.add_inplace(total, term)
            inner.append(total)
        while inner and inner[-1] is None:
            inner.pop()
        if not inner:
            return None
        out = inner[-1]
        for part in reversed(inner[:-1]):  # sum_j rot(inner_j, g*j), Horner style
            out = self.arith.rotate(out, plan.baby)
            if part is not None:
                self.arith.ev.add_inplace(out, part)
        self.arith.ev.rescale_to_next_inplace(out)
        for stride in plan.folds:  # narrowing layer: add up the d / p_out partial outputs
            out = self.arith.add(out, self.arith.rotate(out, stride))
        return out
