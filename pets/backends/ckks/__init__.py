"""CKKS homomorphic encryption through TenSEAL: approximate arithmetic on encrypted reals.

>>> import numpy as np, pets
>>> be = pets.backend("ckks", depth=2)
>>> x = be.encrypt(np.array([[0.5, -1.0]]))
>>> np.round(be.decrypt((x * x + 1.0) @ np.eye(2)), 4).tolist()
[[1.25, 2.0]]

Options (all keywords, all optional): ``depth`` (multiplicative depth; by
default sized by ``compile`` from the model, else 2), ``poly_modulus_degree``,
``coeff_mod_bit_sizes``, ``scale_bits``, ``layout`` (default packing:
``"batched"`` or ``"per_sample"``), ``baby_step`` (BSGS baby-step size).
Keys are made when first needed, for the depth and rotations asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from tenseal.sealapi import Ciphertext  # fails here, at backend load, with an install hint

from pets.backends.base import Backend, Capabilities, Requirements
from pets.backends.ckks import seal_io
from pets.backends.ckks.arithmetic import Arithmetic
from pets.backends.ckks.keys import KeySet
from pets.backends.ckks.layouts import BATCHED, PER_SAMPLE, CKKSData, Packing, as_matrix
from pets.backends.ckks.matvec import can_stage, plan_matvec, staged_steps
from pets.backends.ckks.params import CKKSParameters, choose_parameters
from pets.errors import ParameterError, SerializationError, ValueRangeError
from pets.registry import register_backend

__all__ = ["CKKSBackend", "CKKSParameters", "choose_parameters"]


def matrix_axes(
    shape: tuple[int, ...], matrix: tuple[int, int], axes: tuple[int, ...]
) -> list[int]:
    """The matrix axes (0 rows, 1 columns) that ``axes`` of the user's ``shape`` are."""
    if len(shape) == 2:
        return list(axes)
    if len(shape) == 1:
        return [1 if matrix[0] == 1 and matrix[1] == shape[0] else 0] if axes else []
    return []

#: below this many samples a model input is packed per sample (latency), else batched
PER_SAMPLE_MAX_ROWS = 16


@register_backend("ckks")
class CKKSBackend(Backend):
    """CKKS via TenSEAL: a client encrypts, a server evaluates with the public copy."""

    tolerance: ClassVar[float] = 1e-4
    layouts: ClassVar[tuple[str, ...]] = (BATCHED, PER_SAMPLE)
    capabilities: ClassVar[Capabilities] = Capabilities(
        comparisons=False, private_weights=False, levels=True, rotation_keys=True,
        packings=(BATCHED, PER_SAMPLE), max_rank=2, training=False,
        parties="1 key holder + evaluators with the public copy",
    )

    def __init__(
        self,
        *,
        depth: int | None = None,
        poly_modulus_degree: int | None = None,
        coeff_mod_bit_sizes: Sequence[int] | None = None,
        scale_bits: int | None = None,
        layout: str = BATCHED,
        baby_step: int | None = None,
        key_id: str | None = None,
    ) -> None:
        super().__init__(key_id=key_id)
        self._options = {
            "poly_modulus_degree": poly_modulus_degree,
            "coeff_mod_bit_sizes": coeff_mod_bit_sizes,
            "scale_bits": scale_bits,
        }
        self._depth = depth
        self._default_layout = self._check_layout(layout)
        self._baby = baby_step
        self._keys: KeySet | None = None
        self._public_only = False

    # ---- keys, made when first needed ---------------------------------------------

    @property
    def params(self) -> CKKSParameters:
        """The parameters in force (chosen now if no key exists yet)."""
        if self._keys is not None:
            return self._keys.params
        return choose_parameters(self._depth or 2, **self._options)  # type: ignore[arg-type]

    @property
    def keys(self) -> KeySet:
        if self._keys is None:
            self._keys = KeySet.create(self.params)
        return self._keys

    @functools.cached_property
    def _packing(self) -> Packing:
        return Packing(Arithmetic(self.keys), self._baby)

    @property
    def has_secret_key(self) -> bool:
        # keys not made yet will hold a secret: do not make them just to answer (repr calls this)
        return not self._public_only and (self._keys is None or self._keys.has_secret_key)

    def prepare(self, requirements: Requirements) -> None:
        """Size depth for ``requirements`` and make the rotation keys its products need."""
        if self._keys is None:
            if self._depth is None or self._depth < requirements.depth:
                self._depth = requirements.depth
        elif requirements.depth > self._keys.params.depth:
            raise ParameterError(
                f"this backend's keys were made for depth {self._keys.params.depth} but the "
                f"computation needs {requirements.depth}; create pets.backend('ckks', "
                f"depth={requirements.depth}) or compile the model before encrypting anything"
            )
        max_abs = float(requirements.max_abs)
        if max_abs > self.params.max_abs_value:
            raise ValueRangeError(
                f"values up to {max_abs:.3g} reach a layer, beyond the "
                f"{self.params.max_abs_value:.3g} these CKKS parameters hold; rescale the input "
                "(e.g. standardise it) or pass coeff_mod_bit_sizes with a larger first prime"
            )
        steps: set[int] = set()
        slots = self.params.slots
        for n, m in requirements.matmul_shapes:
            steps |= plan_matvec(n, m, self._baby).steps
        first = requirements.first_product
        if first is not None and can_stage(*first, slots):
            # a model's per-sample input is staged for its first product (see matvec)
            steps |= staged_steps(plan_matvec(*first).d, slots)
        if steps and self.keys.has_secret_key:
            self.keys.ensure_rotations(steps)

    @property
    def default_layout(self) -> str:
        return self._default_layout

    def choose_layout(self, rows: int) -> str:
        """Per-sample packing for a few samples (latency), batched beyond (throughput)."""
        return PER_SAMPLE if rows <= PER_SAMPLE_MAX_ROWS else BATCHED

    def public(self) -> CKKSBackend:
        copy = CKKSBackend(layout=self._default_layout, baby_step=self._baby, key_id=self.key_id)
        copy._keys = self.keys.public()
        copy._public_only = True
        return copy

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, **self.params.describe()}
        info["rotation_steps"] = sorted(self._keys.steps) if self._keys else []
        info["has_secret_key"] = self.has_secret_key if self._keys else True
        return info

    # ---- primitives ----------------------------------------------------------------

    def _encrypt(
        self, array: np.ndarray | None, *, src: int | None, layout: str,
        requirements: Requirements | None = None,
    ) -> CKKSData:
        """A model's per-sample input (``requirements`` given) is staged for its first product."""
        assert array is not None  # one key holder: it always holds the data
        matrix = as_matrix(array)
        self._check_range(matrix)
        first = None if requirements is None else requirements.first_product
        return self._packing.encrypt(matrix, layout, first)

    def _check_range(self, matrix: np.ndarray) -> None:
        limit = self.params.max_abs_value
        largest = float(np.abs(matrix).max()) if matrix.size else 0.0
        if largest > limit:
            raise ValueRangeError(
                f"|values| up to {largest:.3g} exceed {limit:.3g}, the largest these CKKS "
                "parameters keep precisely; scale the data down (e.g. standardise it) or pass "
                "coeff_mod_bit_sizes with a larger first prime"
            )

    def _decrypt(self, native: CKKSData, *, to: int | None) -> np.ndarray:
        return self._packing.decrypt(native)

    def add(self, a: CKKSData, b: CKKSData) -> CKKSData:
        return self._packing.map_pairs(a, b, self._packing.arith.add)

    def add_plain(self, a: CKKSData, plain: np.ndarray) -> CKKSData:
        return self._packing.map_plain(a, plain, self._packing.arith.add_plain)

    def multiply(self, a: CKKSData, b: CKKSData) -> CKKSData:
        return self._packing.map_pairs(a, b, self._packing.arith.multiply)

    def multiply_plain(self, a: CKKSData, plain: np.ndarray) -> CKKSData:
        return self._packing.map_plain(a, plain, self._packing.arith.multiply_plain)

    def negate(self, a: CKKSData) -> CKKSData:
        arith = self._packing.arith
        return CKKSData(a.layout, a.rows, a.cols,
                        tuple(tuple(arith.negate(ct) for ct in g) for g in a.cts), a.replicated)

    def matmul_plain(self, a: CKKSData, matrix: np.ndarray) -> CKKSData:
        return self._packing.matmul(a, matrix)

    def sum(self, a: CKKSData, axes: tuple[int, ...], shape: tuple[int, ...]) -> CKKSData:
        for axis in matrix_axes(shape, (a.rows, a.cols), axes):
            a = self._packing.sum_rows(a) if axis == 0 else self._packing.sum_cols(a)
        return a

    def plain_view(self, plain: np.ndarray, shape: tuple[int, ...], native: CKKSData) -> np.ndarray:
        if as_matrix(np.empty(shape)).shape == (native.rows, native.cols):
            return as_matrix(plain)
        return np.broadcast_to(plain, shape).reshape(native.rows, native.cols)

    def reshape(self, a: CKKSData, old: tuple[int, ...], new: tuple[int, ...]) -> CKKSData:
        rows, cols = a.rows, a.cols
        keeps = (
            (len(new) == 2 and new == (rows, cols))
            or (len(new) == 1 and (rows == 1 or cols == 1))
            or (len(new) == 0 and rows == cols == 1)
        )
        if not keeps:
            raise self._unsupported(
                f"reshape {old} to {new}",
                f"its {a.layout} packing holds a {rows}x{cols} matrix and reshaping it would move "
                "values between ciphertexts or slots; reshape the plain data before encrypting",
            )
        return a

    def take(self, a: CKKSData, index: Any, shape: tuple[int, ...]) -> CKKSData:
        return self._packing.take(a, index, shape)

    def concat(self, natives: Sequence[CKKSData], axis: int,
               shapes: Sequence[tuple[int, ...]]) -> CKKSData:
        return self._packing.concat(list(natives), axis, list(shapes))

    def layout_of(self, a: CKKSData) -> str:
        return a.layout

    def native_shape(self, a: CKKSData) -> tuple[int, ...]:
        return (a.rows, a.cols)

    # ---- bytes -----------------------------------------------------------------------

    def _dump_tensor(self, a: CKKSData) -> tuple[dict[str, Any], list[bytes]]:
        meta = {"layout": a.layout, "rows": a.rows, "cols": a.cols,
                "groups": [len(g) for g in a.cts], "replicated": a.replicated,
                "staged_for": a.staged_for}
        return meta, [seal_io.dump(ct) for ct in a.flat()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> CKKSData:
        try:
            layout, rows, cols = str(meta["layout"]), int(meta["rows"]), int(meta["cols"])
            groups = [int(g) for g in meta["groups"]]
            replicated = bool(meta["replicated"])
            staged = meta.get("staged_for")
            staged_for = None if staged is None else (int(staged[0]), int(staged[1]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"CKKS tensor bytes have a malformed header: {exc}") from exc
        slots = self.params.slots
        expected = (
            [cols] * (-(-rows // slots)) if layout == BATCHED else [1] * rows
        )
        if layout not in self.layouts or groups != expected or sum(groups) != len(blobs):
            raise SerializationError(
                f"CKKS tensor bytes hold {len(blobs)} ciphertexts in groups {groups[:4]}..., "
                f"which does not match a {layout} {rows}x{cols} tensor; they are corrupted"
            )
        cts = []
        it = iter(blobs)
        for size in groups:
            group = []
            for _ in range(size):
                ct = seal_io.load(Ciphertext(), self.keys.seal, next(it), "a ciphertext")
                if ct.poly_modulus_degree() != self.params.poly_modulus_degree or ct.size() != 2:
                    raise SerializationError(
                        "a ciphertext does not match this backend's parameters"
                    )
                group.append(ct)
            cts.append(tuple(group))
        levels = {self._packing.arith.level(ct).index for g in cts for ct in g}
        if len(levels) > 1:
            raise SerializationError("the ciphertexts of one tensor are at different levels")
        return CKKSData(layout, rows, cols, tuple(cts), replicated, staged_for)

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        params = self.params
        context, galois = self.keys.dump(include_secret_key=include_secret_key)
        meta = {
            "poly_modulus_degree": params.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
            "scale_bits": params.scale_bits,
            "steps": sorted(self.keys.steps),
            "layout": self._default_layout,
            "baby_step": self._baby,
            "secret": bool(include_secret_key and self.has_secret_key),
        }
        return meta, [context, galois]

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend:
        try:
            params = CKKSParameters(
                int(meta["poly_modulus_degree"]),
                tuple(int(b) for b in meta["coeff_mod_bit_sizes"]),
                int(meta["scale_bits"]),
            )
            steps = frozenset(int(s) for s in meta["steps"])
            context_blob, galois_blob = blobs
            layout = str(meta["layout"])
            baby = None if meta["baby_step"] is None else int(meta["baby_step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"CKKS key bytes have a malformed header: {exc}") from exc
        choose_parameters(params.depth, poly_modulus_degree=params.poly_modulus_degree,
                          coeff_mod_bit_sizes=params.coeff_mod_bit_sizes,
                          scale_bits=params.scale_bits)  # re-check security before loading
        backend = cls(layout=layout, baby_step=baby, key_id=key_id)
        backend._keys = KeySet.load(params, context_blob, galois_blob, steps)
        backend._public_only = not backend._keys.has_secret_key
        return backend
