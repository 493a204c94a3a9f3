"""Exact-scale CKKS arithmetic on SEAL ciphertexts (see :mod:`.keys` for the scheme).

Every ciphertext that leaves this module sits at the canonical scale of its
level, so any two at the same level can be added without touching scales, and
every multiplication is followed by one rescale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from pets.backends.ckks.keys import KeySet, Level
from pets.errors import DepthExhaustedError, MissingKeyError, ValueRangeError
from pets.slots import signed_steps

__all__ = ["Arithmetic"]

Ciphertext = Any
Plaintext = Any


def negligible(values: np.ndarray | float, scale: float) -> bool:
    """Whether ``values`` encode to the zero plaintext at ``scale`` (SEAL refuses those)."""
    if isinstance(values, float):
        return abs(values) * scale < 0.5
    return float(np.max(np.abs(values), initial=0.0)) * scale < 0.5


class Arithmetic:
    """Level-aware operations over one key set."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.ev = keys.evaluator
        self._sealapi = sealapi

    # ---- levels ------------------------------------------------------------

    def level(self, ct: Ciphertext) -> Level:
        return self.keys.levels[self.keys.seal.get_context_data(ct.parms_id()).chain_index()]

    def below(self, level: Level, what: str) -> Level:
        if level.index == 0:
            raise DepthExhaustedError(
                f"no multiplicative depth left for {what}: the ciphertext has used all "
                f"{self.keys.params.depth} levels of these parameters; create the backend with "
                f"a larger depth (pets.backend('ckks', depth={self.keys.params.depth + 1})) or "
                "let pets.compile size it for the model"
            )
        return self.keys.levels[level.index - 1]

    def drop_to(self, ct: Ciphertext, target: Level) -> Ciphertext:
        """``ct`` brought down to ``target`` at its canonical scale, exactly."""
        current = self.level(ct)
        if current.index == target.index:
            return ct
        above = self.keys.levels[target.index + 1]
        if current.index > above.index:
            switched = self._sealapi.Ciphertext()
            self.ev.mod_switch_to(ct, above.parms_id, switched)
            ct = switched
        one = self.encode_scalar(1.0, above, above.prime * target.scale / ct.scale)
        out = self._sealapi.Ciphertext()
        self.ev.multiply_plain(ct, one, out)
        self.ev.rescale_to_next_inplace(out)
        return out

    def align(self, *cts: Ciphertext) -> list[Ciphertext]:
        """The ciphertexts brought to the lowest level among them."""
        lowest = min((self.level(ct) for ct in cts), key=lambda lv: lv.index)
        return [self.drop_to(ct, lowest) for ct in cts]

    # ---- encoding ------------------------------------------------------------

    def encode(self, values: np.ndarray, level: Level, scale: float | None = None) -> Plaintext:
        plain = self._sealapi.Plaintext()
        try:
            self.keys.encoder.encode(
                np.asarray(values, dtype=np.float64).tolist(),
                level.parms_id,
                level.scale if scale is None else scale,
                plain,
            )
        except (ValueError, RuntimeError) as exc:  # "encoded values are too large"
            raise self._too_large(values, level) from exc
        return plain

    def encode_scalar(self, value: float, level: Level, scale: float) -> Plaintext:
        plain = self._sealapi.Plaintext()
        try:
            self.keys.encoder.encode(float(value), level.parms_id, scale, plain)
        except (ValueError, RuntimeError) as exc:
            raise self._too_large(np.array([value]), level) from exc
        return plain

    def _too_large(self, values: np.ndarray | float, level: Level) -> ValueRangeError:
        largest = float(np.max(np.abs(values), initial=0.0))
        return ValueRangeError(
            f"a plain operand of up to {largest:.3g} is too large to encode at this level of "
            f"the chain (it holds |values| up to {level.capacity:.3g}); scale it down, or "
            "create the backend with room for it: pets.backend('ckks', depth="
            f"{self.keys.params.depth}, max_value={4 * largest:.3g})"
        )

    def factor_scale(self, ct: Ciphertext) -> float:
        """Scale to encode a plain factor at so that ``ct * factor`` rescales canonically."""
        level = self.level(ct)
        return level.prime * self.below(level, "a multiplication").scale / ct.scale

    def encrypt(self, values: np.ndarray) -> Ciphertext:
        ct = self._sealapi.Ciphertext()
        self.keys.encryptor.encrypt(self.encode(values, self.keys.top), ct)
        return ct

    def decrypt(self, ct: Ciphertext) -> np.ndarray:
        assert self.keys.decryptor is not None
        plain = self._sealapi.Plaintext()
        self.keys.decryptor.decrypt(ct, plain)
        return np.asarray(self.keys.encoder.decode_double(plain))

    def zero_like(self, level: Level) -> Ciphertext:
        """A fresh encryption of zero at ``level`` and its canonical scale."""
        ct = self._sealapi.Ciphertext()
        self.keys.encryptor.encrypt(self.encode(np.zeros(1), level), ct)
        return ct

    # ---- arithmetic ------------------------------------------------------------

    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        a, b = self.align(a, b)
        out = self._sealapi.Ciphertext()
        self.ev.add(a, b, out)
        return out

    def add_many(self, cts: Sequence[Ciphertext]) -> Ciphertext:
        aligned = self.align(*cts)
        out = self._sealapi.Ciphertext()
        self.ev.add_many(aligned, out)
        return out

    def add_plain(self, ct: Ciphertext, values: np.ndarray) -> Ciphertext:
        out = self._sealapi.Ciphertext()
        self.ev.add_plain(ct, self.encode(values, self.level(ct), ct.scale), out)
        return out

    def negate(self, ct: Ciphertext) -> Ciphertext:
        out = self._sealapi.Ciphertext()
        self.ev.negate(ct, out)
        return out

    def multiply(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        a, b = self.align(a, b)
        self.below(self.level(a), "a multiplication")
        out = self._sealapi.Ciphertext()
        if a is b:
            self.ev.square(a, out)
        else:
            self.ev.multiply(a, b, out)
        self.ev.relinearize_inplace(out, self.keys.relin_keys)
        self.ev.rescale_to_next_inplace(out)
        return out

    def multiply_plain(self, ct: Ciphertext, values: np.ndarray) -> Ciphertext:
        """``ct * values`` (a slot vector), rescaled to the canonical scale below."""
        scale = self.factor_scale(ct)
        if negligible(values, scale):  # a product SEAL would call "transparent"
            return self.zero_like(self.below(self.level(ct), "a multiplication"))
        return self.multiply_encoded(ct, self.encode(values, self.level(ct), scale))

    def multiply_encoded(
        self, ct: Ciphertext, plain: Plaintext, rescale: bool = True
    ) -> Ciphertext:
        out = self._sealapi.Ciphertext()
        try:
            self.ev.multiply_plain(ct, plain, out)
        except RuntimeError as exc:  # every coefficient rounded to 0: a product below precision
            if "transparent" not in str(exc):
                raise
            level = self.level(ct)
            zero = self.zero_like(level)
            self.ev.multiply_plain(zero, self.encode_scalar(1.0, level, plain.scale), out)
        if rescale:
            self.ev.rescale_to_next_inplace(out)
        return out

    def linear_combination(
        self, cts: Sequence[Ciphertext], weights: Sequence[float] | np.ndarray
    ) -> Ciphertext | None:
        """``sum_i weights[i] * cts[i]`` with one rescale; ``None`` if every weight is ~0.

        All ``cts`` must share one level and scale (columns of one tensor do).
        """
        scale = self.factor_scale(cts[0])
        level = self.level(cts[0])
        acc = None
        for ct, weight in zip(cts, np.asarray(weights, dtype=np.float64).tolist(), strict=True):
            if negligible(weight, scale):
                continue
            plain = self.encode_scalar(weight, level, scale)
            if acc is None:
                acc = self.multiply_encoded(ct, plain, rescale=False)
            else:
                tmp = self.multiply_encoded(ct, plain, rescale=False)
                self.ev.add_inplace(acc, tmp)
        if acc is not None:
            self.ev.rescale_to_next_inplace(acc)
        return acc

    def rotate(self, ct: Ciphertext, step: int) -> Ciphertext:
        """Left rotation of the slot vector by ``step``.

        Built from power-of-two rotations (``12 = 16 - 4``: two key switches) unless a key
        for the exact step exists; the key holder makes missing power-of-two keys on demand,
        a public key set composes the rotation from the keys it has.
        """
        step %= self.keys.params.slots
        if step == 0:
            return ct
        for part in self.rotation_path(step):
            out = self._sealapi.Ciphertext()
            self.ev.rotate_vector(ct, part, self.keys.galois, out)
            ct = out
        return ct

    def rotation_path(self, step: int) -> list[int]:
        """Steps with keys whose rotations add up to ``step`` (one step if its key exists)."""
        keys = self.keys
        step %= keys.params.slots
        if step in keys.steps:
            return [step]
        parts = signed_steps(step, keys.params.slots)  # powers of two, +-: at most log2 keys
        if keys.has_secret_key or all(part in keys.steps for part in parts):
            keys.ensure_rotations(set(parts))
            return parts
        path, remaining = [], step
        for available in sorted(keys.steps, reverse=True):
            while available <= remaining:
                path.append(available)
                remaining -= available
        if remaining:
            keys.ensure_rotations({step})  # raises MissingKeyError naming the step
        return path

    def require_rotations(self, steps: set[int]) -> None:
        """Raise :class:`MissingKeyError` now, naming every step of ``steps`` that can be
        neither done with a key nor composed from the keys held."""
        keys = self.keys
        if keys.has_secret_key:
            keys.ensure_rotations(steps)
            return
        missing = set()
        for step in steps:
            try:
                self.rotation_path(step)
            except MissingKeyError:
                missing.add(step)
        if missing:
            keys.ensure_rotations(missing)

    def sum_slots(self, ct: Ciphertext, period: int) -> Ciphertext:
        """Every slot gets the sum of the ``period`` slots starting at it (log2 rotations)."""
        return self.sum_slots_by(ct, 1, period)

    def sum_slots_by(self, ct: Ciphertext, stride: int, span: int) -> Ciphertext:
        """Every slot gets the sum of the ``span / stride`` slots ``stride`` apart from it."""
        steps, step = set(), stride
        while step < span:
            steps.add(step)
            step *= 2
        self.require_rotations(steps)  # make missing keys at once, not one at a time
        step = stride
        while step < span:
            rotated = self.rotate(ct, step)
            out = self._sealapi.Ciphertext()
            self.ev.add(ct, rotated, out)
            ct = out
            step *= 2
        return ct
