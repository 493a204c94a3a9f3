"""CKKS homomorphic encryption through TenSEAL: approximate arithmetic on encrypted reals.

>>> import numpy as np, pets
>>> be = pets.backend("ckks", depth=2)
>>> x = be.encrypt(np.array([[0.5, -1.0]]))
>>> np.round(be.decrypt((x * x + 1.0) @ np.eye(2)), 4).tolist()
[[1.25, 2.0]]

Options (all keywords, all optional): ``depth`` (multiplicative depth; by
default sized by ``compile`` from the model, else 2), ``max_value`` (largest
``|value|`` the computation must hold; sizes the first prime),
``poly_modulus_degree``, ``coeff_mod_bit_sizes``, ``scale_bits``, ``layout``
(``"batched"`` or ``"per_sample"`` for every tensor; by default per-sample for
up to 16 rows, batched beyond), ``baby_step`` (BSGS baby-step size).
Keys are made when first needed, for the depth and rotations asked for.

Every tensor carries a bound on its values, tracked through each operation
(no decryption): an operation whose result could wrap around the modulus
raises :class:`~pets.errors.ValueRangeError` instead of returning garbage.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from tenseal.sealapi import Ciphertext  # fails here, at backend load, with an install hint

from pets import seal_io
from pets.backends.base import MAX_ELEMENTS, Backend, Capabilities, Requirements
from pets.backends.ckks.arithmetic import Arithmetic
from pets.backends.ckks.keys import KeySet
from pets.backends.ckks.layouts import BATCHED, PER_SAMPLE, CKKSData, Packing, as_matrix
from pets.backends.ckks.matvec import (
    Gather,
    can_stage,
    next_power_of_two,
    plan_matvec,
    staged_steps,
)
from pets.backends.ckks.params import CKKSParameters, choose_parameters
from pets.backends.levelled import (
    DEFAULT_PLANNING,
    LEVELLED,
    LevelledRequirements,
    Planning,
    levelled_requirements,
)
from pets.errors import ParameterError, SerializationError, ValueRangeError
from pets.registry import register_backend
from pets.slots import SparseMatrix, decode_ints, encode_ints, key_steps, plan_diagonals

__all__ = ["CKKSBackend", "CKKSParameters", "choose_parameters"]

AUTO = "auto"


def matrix_axes(
    shape: tuple[int, ...], matrix: tuple[int, int], axes: tuple[int, ...]
) -> list[int]:
    """The matrix axes (0 rows, 1 columns) that ``axes`` of the user's ``shape`` are."""
    if len(shape) == 2:
        return list(axes)
    if len(shape) == 1:
        return [1 if matrix[0] == 1 and matrix[1] == shape[0] else 0] if axes else []
    return []


#: up to this many samples a tensor is packed per sample (latency), else batched
PER_SAMPLE_MAX_ROWS = 16
#: a first product's input is gathered (im2col) if that takes at most this many ciphertexts
MAX_GATHERED_CIPHERTEXTS = 64


@register_backend("ckks")
class CKKSBackend(Backend):
    """CKKS via TenSEAL: a client encrypts, a server evaluates with the public copy."""

    tolerance: ClassVar[float] = 1e-4
    layouts: ClassVar[tuple[str, ...]] = (BATCHED, PER_SAMPLE)
    capabilities: ClassVar[Capabilities] = Capabilities(
        comparisons=False, private_weights=False, max_rank=2, training=False,
        parties="1 key holder + evaluators with the public copy",
    )
    lowering: ClassVar[str] = LEVELLED

    def __init__(
        self,
        *,
        depth: int | None = None,
        max_value: float | None = None,
        poly_modulus_degree: int | None = None,
        coeff_mod_bit_sizes: Sequence[int] | None = None,
        scale_bits: int | None = None,
        layout: str | None = None,
        baby_step: int | None = None,
        key_id: str | None = None,
    ) -> None:
        super().__init__(key_id=key_id)
        self._options: dict[str, Any] = {
            "poly_modulus_degree": poly_modulus_degree,
            "coeff_mod_bit_sizes": coeff_mod_bit_sizes,
            "scale_bits": scale_bits,
        }
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                                  or depth < 1):
            raise ParameterError(f"depth must be an integer >= 1, got {depth!r}")
        if max_value is not None and not (np.isfinite(max_value) and max_value > 0):
            raise ParameterError(f"max_value must be a positive number, got {max_value!r}")
        self._depth = depth
        self._fit: dict[str, Any] = {"max_abs": max_value}
        self._default_layout = AUTO if layout is None else self._check_layout(layout)
        self._baby = baby_step
        self._keys: KeySet | None = None
        self._public_only = False
        self._warned: set[str] = set()
        if depth is not None or any(v is not None for v in self._options.values()) or max_value:
            _ = self.params  # refuse impossible parameters now, not at the first operation

    # ---- identity and keys, made when first needed ---------------------------------------

    @property  # type: ignore[override]
    def key_id(self) -> str:
        """The keys' fingerprint: a hash of the parameters and the public key (asking for it
        makes the keys, as encrypting does; ``repr`` and ``describe`` do not)."""
        return self.keys.fingerprint

    @key_id.setter
    def key_id(self, value: str) -> None:
        self._label = value  # a loaded backend's label; checked against the keys on load

    def __repr__(self) -> str:
        if self._keys is None:
            return f"<{type(self).__name__} {self.name} (keys not made yet)>"
        return super().__repr__()

    @property
    def params(self) -> CKKSParameters:
        """The parameters in force (chosen now if no key exists yet)."""
        if self._keys is not None:
            return self._keys.params
        return choose_parameters(
            self._depth or 2, slots=self._fit.get("slots", 1), max_abs=self._fit.get("max_abs"),
            noise_gain=self._fit.get("noise_gain"), precision=self._fit.get("precision"),
            **self._options,
        )

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
        """Size the parameters for ``requirements`` and make the rotation keys it needs.

        Reads ``max_abs`` and, from the levelled extension, ``depth``, the products'
        shapes, ``precision`` and ``noise_gain`` (the scale that meets the precision).
        """
        levelled = levelled_requirements(requirements)
        if self._keys is None:
            if self._depth is None or self._depth < levelled.depth:
                self._depth = levelled.depth
            widths = [max(n, m) for n, m in levelled.matmul_shapes]
            self._fit = {
                **self._fit,
                "max_abs": max(float(requirements.max_abs), self._fit.get("max_abs") or 0.0)
                or None,
                "noise_gain": levelled.noise_gain,
                "precision": levelled.precision,
                "slots": min(next_power_of_two(max(widths, default=1)), 16384),
            }
        elif levelled.depth > self._keys.params.depth:
            raise ParameterError(
                f"this backend's keys were made for depth {self._keys.params.depth} but the "
                f"computation needs {levelled.depth}; create pets.backend('ckks', "
                f"depth={levelled.depth}) or compile the model before encrypting anything"
            )
        max_abs = float(requirements.max_abs)
        try:
            params = self.params
        except ParameterError as exc:
            noisiest = levelled.noisiest_layer
            if noisiest and "precision" in str(exc):
                raise ParameterError(f"{exc}; the layer that costs the most: {noisiest}") from exc
            raise
        if max_abs > params.max_abs_value:
            raise ValueRangeError(
                f"values up to {max_abs:.3g} reach a layer, beyond the {params.max_abs_value:.3g} "
                "these CKKS parameters hold; "
                + (f"{self._room_for(max_abs)}, or compile the model before encrypting "
                   "anything (compile sizes the parameters)"
                   if self._keys is None or self._options["coeff_mod_bit_sizes"] is None else
                   "leave coeff_mod_bit_sizes unset so that compile sizes the first prime")
            )
        if self.keys.has_secret_key:
            self.keys.ensure_rotations(self.rotation_steps(requirements))

    def rotation_steps(self, requirements: Requirements) -> set[int]:
        """The rotation keys a computation with ``requirements`` uses (powers of two)."""
        slots = self.params.slots
        steps: set[int] = set()
        levelled = levelled_requirements(requirements)
        products = _products(levelled)
        if products is None:  # only the shapes are known: dense, ordinary placements
            for n, m in levelled.matmul_shapes:
                period_in, period_out = next_power_of_two(n), next_power_of_two(m)
                if max(period_in, period_out) <= slots:
                    plan = plan_diagonals(period_in, period_out,
                                          range(min(period_in, period_out)), self._baby)
                    steps |= key_steps(plan.rotation_steps(), slots)
        else:
            for period_in, period_out, offsets in products:
                if max(period_in, period_out) <= slots:
                    plan = plan_diagonals(period_in, period_out, offsets, self._baby)
                    steps |= key_steps(plan.rotation_steps(), slots)
        first = levelled.first_product
        gather = self._gather(requirements)
        if gather is not None:
            steps |= gather.steps(slots)
        elif first is not None and can_stage(*first, slots):
            # a model's per-sample input is staged for its first product (see matvec)
            steps |= staged_steps(plan_matvec(*first).d, slots)
        return steps

    def _gather(self, requirements: Requirements | None) -> Gather | None:
        """The gather table a model's requirements describe for its first product, if the
        input is to be gathered (few enough ciphertexts per sample)."""
        levelled = levelled_requirements(requirements)
        described = levelled.gather
        if levelled.first_product is None or not described:
            return None
        try:
            n, m = levelled.first_product
            outputs, terms = int(described["outputs"]), int(described["terms"])
            if outputs != m or not 1 <= terms <= n:
                raise ValueError(f"a {outputs}x{terms} table for a {n}x{m} product")
            table = decode_ints(described["table"], outputs * terms, low=-1, high=n)
            placement = described.get("placement")
            place = None if placement is None else decode_ints(placement, m, low=0,
                                                               high=self.params.slots)
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"the requirements' gather table is malformed: {exc}") from exc
        gather = Gather(table.reshape(outputs, terms), place)
        slots = self.params.slots
        if gather.period > slots or gather.ciphertexts(slots) > MAX_GATHERED_CIPHERTEXTS:
            return None
        return gather

    @property
    def default_layout(self) -> str:
        return self._default_layout

    def choose_layout(self, rows: int) -> str:
        """Per-sample packing for a few samples (latency), batched beyond (throughput)."""
        if self._default_layout != AUTO:
            return self._default_layout
        return PER_SAMPLE if rows <= PER_SAMPLE_MAX_ROWS else BATCHED

    def public(self) -> CKKSBackend:
        copy = CKKSBackend(layout=None if self._default_layout == AUTO else self._default_layout,
                           baby_step=self._baby, key_id=self.key_id)
        copy._keys = self.keys.public()
        copy._public_only = True
        return copy

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, **self.params.describe()}
        info["rotation_steps"] = sorted(self._keys.steps) if self._keys else []
        info["has_secret_key"] = self.has_secret_key
        return info

    # ---- bounds ---------------------------------------------------------------------------

    def _bounded(self, data: CKKSData, bound: float, what: str, *sources: CKKSData) -> CKKSData:
        """``data`` with ``bound``, refused if values that large could have wrapped around;
        ``sources`` are the operands (whether any came from bytes carries over)."""
        level = self._packing.arith.level(data.flat()[0])
        effective = bound * data.occupancy(self.params.slots)
        if not effective <= level.capacity:  # also catches nan
            fix = self._room_for(bound * 4)
            raise ValueRangeError(
                f"the values of this {what} may reach {bound:.3g} (a bound pets tracks through "
                f"each operation), beyond the {level.capacity:.3g} a ciphertext holds at this "
                f"level before it wraps around into garbage; scale the data down, or {fix}"
            )
        loaded = data.loaded or any(source.loaded for source in sources)
        return replace(data, bound=float(bound), loaded=loaded)

    def _room_for(self, value: float) -> str:
        """The backend options that hold ``|values| <= value``, checked to exist."""
        depth = self.params.depth
        if not math.isfinite(value):  # e.g. 4x a forged bound of 1e308
            return "values this large cannot be held at a useful precision at any secure size"
        try:
            choose_parameters(depth, max_abs=value)
        except (ParameterError, ValueRangeError):
            return "values this large cannot be held at a useful precision at any secure size"
        return (f"create the backend with room for them: pets.backend('ckks', depth={depth}, "
                f"max_value={value:.3g})")

    def assume_bound(self, data: CKKSData, bound: float) -> CKKSData:
        """``data`` with its bound tightened to ``bound`` (a compiled model's calibrated range)."""
        return replace(data, bound=min(data.bound, float(bound)))

    # ---- primitives ----------------------------------------------------------------

    def _check_layout(self, layout: str | None) -> str:
        if layout == AUTO:
            return AUTO
        return super()._check_layout(layout)

    def _encrypt(
        self, array: np.ndarray | None, *, src: int | None, layout: str,
        requirements: Requirements | None = None,
    ) -> CKKSData:
        """A model's per-sample input (``requirements`` given) is staged for its first product."""
        assert array is not None  # one key holder: it always holds the data
        matrix = as_matrix(array)
        if layout == AUTO:
            layout = self.choose_layout(matrix.shape[0])
            if layout == PER_SAMPLE and next_power_of_two(matrix.shape[1]) > self.params.slots:
                layout = BATCHED
        self._check_range(matrix)
        if requirements is not None:
            _check_calibrated_range(matrix, levelled_requirements(requirements))
        first = levelled_requirements(requirements).first_product
        gather = self._gather(requirements) if layout == PER_SAMPLE else None
        return self._packing.encrypt(matrix, layout, first, gather)

    def _check_range(self, matrix: np.ndarray) -> None:
        limit = self.params.max_abs_value
        largest = float(np.abs(matrix).max()) if matrix.size else 0.0
        if largest > limit:
            raise ValueRangeError(
                f"|values| up to {largest:.3g} exceed {limit:.3g}, the largest these CKKS "
                "parameters keep precisely; scale the data down (e.g. standardise it), or "
                f"{self._room_for(largest)}"
            )

    def _decrypt(self, native: CKKSData, *, to: int | None) -> np.ndarray:
        values = self._packing.decrypt(native)
        largest = float(np.max(np.abs(values), initial=0.0))
        if largest > 4.0 * native.bound + 1.0:
            found = (f"decrypted values reach {largest:.3g}, far beyond the bound "
                     f"{native.bound:.3g} tracked for this tensor")
            if native.loaded:
                raise SerializationError(
                    f"{found}: its ciphertexts were encrypted under other keys and relabelled, "
                    "or damaged; decrypt only what these keys encrypted"
                )
            raise ValueRangeError(
                f"{found}: a compiled model's input lay outside the range it was calibrated "
                "for, so values left the ranges its layers vouch for; encrypt model inputs "
                "with model.encrypt(x), which checks their range"
            )
        return values

    def add(self, a: CKKSData, b: CKKSData) -> CKKSData:
        out = self._packing.map_pairs(a, b, self._packing.arith.add)
        return self._bounded(out, a.bound + b.bound, "addition", a, b)

    def add_plain(self, a: CKKSData, plain: np.ndarray) -> CKKSData:
        out = self._packing.map_plain(a, plain, self._packing.arith.add_plain)
        return self._bounded(out, a.bound + _largest(plain), "addition", a)

    def multiply(self, a: CKKSData, b: CKKSData) -> CKKSData:
        out = self._packing.map_pairs(a, b, self._packing.arith.multiply)
        return self._bounded(out, a.bound * b.bound, "multiplication", a, b)

    def multiply_plain(self, a: CKKSData, plain: np.ndarray) -> CKKSData:
        out = self._packing.map_plain(a, plain, self._packing.arith.multiply_plain)
        return self._bounded(out, a.bound * _largest(plain), "multiplication", a)

    def negate(self, a: CKKSData) -> CKKSData:
        arith = self._packing.arith
        return replace(a, cts=tuple(tuple(arith.negate(ct) for ct in g) for g in a.cts))

    def matmul_plain(self, a: CKKSData, matrix: np.ndarray) -> CKKSData:
        return self.matmul_sparse(a, matrix, None)

    def matmul_sparse(self, a: CKKSData, matrix: np.ndarray | SparseMatrix,
                      placement: np.ndarray | None) -> CKKSData:
        """``a @ matrix`` for a dense or sparse matrix; a per-sample result sits at
        ``placement`` (a compiled convolution's canvas, :mod:`pets.slots`)."""
        out = self._packing.matmul(a, matrix, placement)
        column_sums = (matrix.column_abs_sums() if isinstance(matrix, SparseMatrix)
                       else np.abs(matrix).sum(axis=0))
        return self._bounded(out, a.bound * float(np.max(column_sums, initial=0.0)),
                             "matrix product", a)

    def sum(self, a: CKKSData, axes: tuple[int, ...], shape: tuple[int, ...]) -> CKKSData:
        bound, source = a.bound, a
        for axis in matrix_axes(shape, (a.rows, a.cols), axes):
            bound *= a.rows if axis == 0 else a.cols
            a = self._packing.sum_rows(a) if axis == 0 else self._packing.sum_cols(a)
        return self._bounded(a, bound, "sum", source)

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
        return replace(self._packing.take(a, index, shape), bound=a.bound)

    def concat(self, natives: Sequence[CKKSData], axis: int,
               shapes: Sequence[tuple[int, ...]]) -> CKKSData:
        out = self._packing.concat(list(natives), axis, list(shapes))
        return replace(out, bound=max(n.bound for n in natives),
                       loaded=any(n.loaded for n in natives))

    # ---- costs and advice (pets.compiler.estimate) ------------------------------------

    def operation_costs(self) -> dict[str, Any]:
        """Bytes of a ciphertext and a plaintext per level, and seconds per operation,
        measured once on these keys (a few milliseconds), for estimates before running."""
        cached = self.__dict__.get("_costs")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        import time

        arith = self._packing.arith
        params = self.params
        n = params.poly_modulus_degree
        levels = sorted(self.keys.levels)
        ct = arith.encrypt(np.full(params.slots, 0.5))
        plain = arith.encode(np.full(params.slots, 0.5), self.keys.top, arith.factor_scale(ct))

        def timed(action: Any, repeat: int = 3) -> float:
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                action()
                best = min(best, time.perf_counter() - start)
            return best

        step = min(self.keys.steps, default=None)
        costs = {
            "slots": params.slots,
            "ciphertext_bytes": {lv: 2 * n * (lv + 1) * 8 for lv in levels},
            "plaintext_bytes": {lv: n * (lv + 1) * 8 for lv in levels},
            "top": max(levels),
            "seconds": {
                "encrypt": timed(lambda: arith.encrypt(np.zeros(params.slots))),
                "multiply_plain": timed(lambda: arith.multiply_encoded(ct, plain, rescale=False)),
                "scalar_multiply": timed(lambda: arith.linear_combination([ct] * 16,
                                                                          [0.5] * 16)) / 16,
                "multiply": timed(lambda: arith.multiply(ct, ct)),
                "add": timed(lambda: arith.add(ct, ct)),
                "rotate": timed(lambda: arith.rotate(ct, step)) if step else
                timed(lambda: arith.multiply(ct, ct)) * 2,
                "encode": timed(lambda: arith.encode(np.full(params.slots, 0.5),
                                                     self.keys.top)),
            },
        }
        self.__dict__["_costs"] = costs
        return costs

    def packing_advice(self, a: CKKSData, requirements: Requirements) -> str | None:
        """Why ``a`` is packed slowly for a computation with ``requirements``, and what to
        call instead (``None`` if it is packed as the model would pack it)."""
        first = levelled_requirements(requirements).first_product
        if a.layout == PER_SAMPLE and first is not None and a.staged_for is None and (
            self._gather(requirements) is not None or can_stage(*first, self.params.slots)
        ):
            return ("this per_sample input is not laid out for the model's first product; "
                    "model.encrypt(x) gathers (or stages) it, so that product takes a few "
                    "plaintext multiplications instead of a rotation per diagonal")
        if a.layout == BATCHED and a.rows <= PER_SAMPLE_MAX_ROWS:
            return (f"a batched packing of {a.rows} samples costs as much as one of "
                    "thousands; model.encrypt(x) packs a few samples one per ciphertext")
        return None

    def planning(self) -> Planning:
        """What the levelled lowering assumes before keys exist (N = 16384)."""
        return DEFAULT_PLANNING

    # ---- splitting work between processes (pets.compiler.parallel) ----------------------

    def split_rows(self, a: CKKSData, parts: int) -> list[CKKSData]:
        """``a`` cut into at most ``parts`` independent pieces of whole ciphertexts: samples
        of a per-sample tensor, chunks of ``slots`` samples of a batched one."""
        groups = len(a.cts)
        count = max(1, min(parts, groups))
        bounds = [round(i * groups / count) for i in range(count + 1)]
        pieces = []
        for start, stop in itertools.pairwise(bounds):
            if a.layout == BATCHED:
                rows = min(a.rows, stop * self.params.slots) - start * self.params.slots
            else:
                rows = stop - start
            pieces.append(replace(a, rows=rows, cts=a.cts[start:stop]))
        return pieces

    def join_rows(self, pieces: Sequence[CKKSData]) -> CKKSData:
        """The inverse of :meth:`split_rows` (pieces in order)."""
        first = pieces[0]
        return replace(first, rows=sum(p.rows for p in pieces),
                       cts=tuple(group for p in pieces for group in p.cts),
                       bound=max(p.bound for p in pieces), loaded=any(p.loaded for p in pieces))

    def layout_of(self, a: CKKSData) -> str:
        return a.layout

    def native_shape(self, a: CKKSData) -> tuple[int, ...]:
        return (a.rows, a.cols)

    # ---- bytes -----------------------------------------------------------------------

    def _dump_tensor(self, a: CKKSData) -> tuple[dict[str, Any], list[bytes]]:
        meta = {"layout": a.layout, "rows": a.rows, "cols": a.cols,
                "groups": [len(g) for g in a.cts], "replicated": a.replicated,
                "staged_for": a.staged_for, "bound": a.bound, "gathered": a.gathered,
                "placement": None if a.placement is None else encode_ints(a.placement)}
        return meta, [seal_io.dump(ct, "a ciphertext") for ct in a.flat()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> CKKSData:
        try:
            layout, rows, cols = str(meta["layout"]), int(meta["rows"]), int(meta["cols"])
            groups = [int(g) for g in meta["groups"]]
            replicated = bool(meta["replicated"])
            staged = meta.get("staged_for")
            staged_for = None if staged is None else (int(staged[0]), int(staged[1]))
            bound = float(meta.get("bound", self.params.max_abs_value))
            gathered = bool(meta.get("gathered", False))
            placement = meta.get("placement")
            place = None if placement is None else decode_ints(
                placement, cols, low=0, high=self.params.slots)
            if place is not None and len(np.unique(place)) != cols:
                raise ValueError("a placement puts two features at one slot")
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise SerializationError(f"CKKS tensor bytes have a malformed header: {exc}") from exc
        slots = self.params.slots
        if not (1 <= rows <= MAX_ELEMENTS and 1 <= cols <= MAX_ELEMENTS):
            raise SerializationError(
                f"CKKS tensor bytes announce a {rows:.3g}x{cols:.3g} tensor; they are "
                "corrupted or forged"
            )
        if len(groups) != (-(-rows // slots) if layout == BATCHED else rows):
            raise SerializationError(
                f"CKKS tensor bytes hold {len(blobs)} ciphertexts in {len(groups)} groups, "
                f"which does not match a {layout} {rows}x{cols} tensor; they are corrupted"
            )
        per_row = groups[0] if gathered and groups and 1 <= groups[0] <= 1024 else 1
        expected = (
            [cols] * (-(-rows // slots)) if layout == BATCHED else [per_row] * rows
        )
        if layout not in self.layouts or groups != expected or sum(groups) != len(blobs):
            raise SerializationError(
                f"CKKS tensor bytes hold {len(blobs)} ciphertexts in groups {groups[:4]}..., "
                f"which does not match a {layout} {rows}x{cols} tensor; they are corrupted"
            )
        if (gathered or place is not None) and layout != PER_SAMPLE:
            raise SerializationError("CKKS tensor bytes give a batched tensor a slot placement")
        if gathered and staged_for is None:
            raise SerializationError("CKKS tensor bytes say gathered but not for which product")
        if staged_for is not None and (layout != PER_SAMPLE or staged_for[0] != cols or not (
                gathered or can_stage(*staged_for, slots))):
            raise SerializationError(
                f"CKKS tensor bytes say they are staged for a {staged_for} product, which a "
                f"{layout} {rows}x{cols} tensor cannot be; they are corrupted or forged"
            )
        if not (math.isfinite(bound) and bound >= 0):
            raise SerializationError(f"CKKS tensor bytes carry an invalid value bound {bound!r}")
        cts = []
        it = iter(blobs)
        arith = self._packing.arith
        for size in groups:
            group = []
            for _ in range(size):
                ct = seal_io.load(Ciphertext(), self.keys.seal, next(it), "a ciphertext")
                self._check_ciphertext(ct)
                group.append(ct)
            cts.append(tuple(group))
        levels = {arith.level(ct).index for g in cts for ct in g}
        if len(levels) > 1:
            raise SerializationError("the ciphertexts of one tensor are at different levels")
        data = CKKSData(layout, rows, cols, tuple(cts), replicated, staged_for, loaded=True,
                        placement=place, gathered=gathered)
        try:
            return self._bounded(data, bound, "tensor")
        except ValueRangeError as exc:
            raise SerializationError(
                f"CKKS tensor bytes claim values up to {bound:.3g}, more than their level "
                "holds; they are corrupted or forged"
            ) from exc

    def _check_ciphertext(self, ct: Any) -> None:
        """Refuse a ciphertext whose metadata contradicts these keys (size, form, scale)."""
        params = self.params
        if (ct.poly_modulus_degree() != params.poly_modulus_degree or ct.size() != 2
                or not ct.is_ntt_form()):
            raise SerializationError("a ciphertext does not match this backend's parameters")
        level = self._packing.arith.level(ct)
        if not abs(ct.scale / level.scale - 1.0) < 1e-9:
            raise SerializationError(
                f"a ciphertext's scale (2**{math.log2(ct.scale):.2f}) is not the scale of its "
                f"level (2**{math.log2(level.scale):.2f}) under these keys; it was made under "
                "other parameters, or its metadata was forged"
            )

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        params = self.params
        keys = self.keys
        meta = {
            "poly_modulus_degree": params.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
            "scale_bits": params.scale_bits,
            "notes": list(params.notes),
            "steps": sorted(keys.steps),
            "layout": self._default_layout,
            "baby_step": self._baby,
            "secret": bool(include_secret_key and self.has_secret_key),
        }
        return meta, keys.dump(include_secret_key=include_secret_key and self.has_secret_key)

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend:
        try:
            sizes = tuple(int(b) for b in meta["coeff_mod_bit_sizes"])
            params = CKKSParameters(
                int(meta["poly_modulus_degree"]), sizes, int(meta["scale_bits"]),
                tuple(str(n) for n in meta.get("notes", ())),
            )
            steps = frozenset(int(s) for s in meta["steps"])
            layout = str(meta["layout"])
            baby = None if meta["baby_step"] is None else int(meta["baby_step"])
            secret = bool(meta["secret"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"CKKS key bytes have a malformed header: {exc}") from exc
        if len(blobs) != (4 if secret else 3):
            raise SerializationError(
                f"CKKS key bytes hold {len(blobs)} parts where their header announces "
                f"{4 if secret else 3}; they are corrupted or forged"
            )
        if layout not in (AUTO, *cls.layouts) or (baby is not None and baby < 1):
            raise SerializationError(f"CKKS key bytes name an unknown layout {layout!r}")
        if len(sizes) > 64 or len(steps) > 4096:
            raise SerializationError("CKKS key bytes announce absurd parameters")
        try:  # re-check security before any key is parsed
            choose_parameters(params.depth, poly_modulus_degree=params.poly_modulus_degree,
                              coeff_mod_bit_sizes=params.coeff_mod_bit_sizes,
                              scale_bits=params.scale_bits)
        except (ParameterError, IndexError) as exc:
            raise SerializationError(f"CKKS key bytes hold unusable parameters: {exc}") from exc
        keys = KeySet.load(params, blobs, steps)
        if keys.fingerprint != key_id:
            raise SerializationError(
                f"CKKS key bytes are labelled {key_id!r} but their parameters and public key "
                f"hash to {keys.fingerprint!r}; they were relabelled, forged or corrupted"
            )
        if keys.has_secret_key:
            _check_key_pair(keys)
        backend = cls(layout=None if layout == AUTO else layout, baby_step=baby, key_id=key_id)
        backend._keys = keys
        backend._public_only = not keys.has_secret_key
        return backend


def _products(requirements: LevelledRequirements) -> list[tuple[int, int, list[int]]] | None:
    """The per-sample products a compiled model describes (``products``)."""
    described = requirements.products
    if described is None:
        return None
    try:
        products = [(int(p["period_in"]), int(p["period_out"]), [int(k) for k in p["offsets"]])
                    for p in described]
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"the requirements' products are malformed: {exc}") from exc
    for period_in, period_out, offsets in products:
        if any(p < 1 or p > 1 << 20 or p & (p - 1) for p in (period_in, period_out)) or any(
            not 0 <= k < min(period_in, period_out) for k in offsets
        ):
            raise SerializationError("the requirements describe an impossible product")
    return products


def _check_calibrated_range(matrix: np.ndarray, requirements: LevelledRequirements) -> None:
    """Refuse (or warn about) inputs beyond the range a compiled model was calibrated for."""
    bound, mode = requirements.input_bound, requirements.check_range
    if bound is None or mode == "off":
        return
    largest = float(np.max(np.abs(matrix), initial=0.0))
    if largest <= float(bound):
        return
    message = (
        f"inputs reach |x| = {largest:.3g}, beyond the range this model was calibrated for "
        f"(|x| <= {float(bound):.3g}: its example input's, widened by the compile margin); its "
        "polynomial approximations and its parameters hold only there, so results would be "
        "wrong. Scale the inputs as the example input was scaled (e.g. standardise with the "
        "training statistics), or compile with an example_input that covers them"
    )
    if mode == "warn":
        warnings.warn(message + " (check_range='warn': encrypting anyway)", UserWarning,
                      stacklevel=4)
        return
    raise ValueRangeError(message + "; model.encrypt(x, check_range='warn') encrypts anyway")


def _largest(plain: np.ndarray) -> float:
    return float(np.max(np.abs(plain), initial=0.0))


def _check_key_pair(keys: KeySet) -> None:
    """Refuse a secret key that does not decrypt what its public key encrypts."""
    arith = Arithmetic(keys)
    probe = np.linspace(-1.0, 1.0, 8)
    got = arith.decrypt(arith.encrypt(probe))[:8]
    if not np.allclose(got, probe, atol=1e-3):
        raise SerializationError(
            "the CKKS secret key does not belong to the public key it travels with; the key "
            "bytes are corrupted or forged"
        )

