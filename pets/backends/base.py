"""The backend contract: a small core every backend implements, plus capabilities.

Everything a user sees — operators, polynomials, activations, layers, models,
training — is written once on top of these primitives (:mod:`pets.tensor`,
:mod:`pets.functions`, :mod:`pets.polynomial`, :mod:`pets.compile`). A backend
works on its own *native* data (ciphertexts, secret shares, arrays); the user's
shape lives in :class:`~pets.tensor.PrivateTensor`, which also does every
wrapping and operand check, so this module never builds a tensor itself.

The core, on native data (every backend):

=====================  =====================================================
``_encrypt``            numpy array from party ``src`` -> native data
``_decrypt``            native data -> numpy array, for party ``to`` (or all)
``add`` ``multiply``    native (+|*) native, same shape
``add_plain``           native + numpy (broadcastable)
``multiply_plain``      native * numpy (broadcastable)
``negate``              -native
``matmul_plain``        native ``(..., n)`` @ numpy ``(n, m)``
``sum``                 sum over the given axes of the user's shape
``native_shape``        the shape of native data (what its bytes must hold)
``layout_of``           which packing native data is in
``_dump_tensor`` /      native data <-> blobs + metadata (never a key)
``_load_tensor``
``_dump_keys`` /        key material <-> blobs (the secret only when asked)
``_load_keys``
``public``              a copy that cannot decrypt
=====================  =====================================================

What else a backend can do it declares in :class:`Capabilities`, and implements
the matching optional primitives (``matmul`` of two private operands,
``less_than_zero``, ``reshape``, ``transpose``, ``take``, ``concat``,
``broadcast_to``, ``conv2d``, ``function``); the defaults raise
:class:`~pets.errors.UnsupportedOperationError` naming what is missing.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pets.errors import (
    KeyMismatchError,
    PartyError,
    SerializationError,
    UnsupportedOperationError,
)
from pets.measure import record_serialized
from pets.serialization import Envelope, pack

if TYPE_CHECKING:
    from pets.parties import PartyRuntime
    from pets.tensor import PrivateTensor

__all__ = ["Backend", "Capabilities", "Requirements", "RequirementsExtension"]

Native = Any

#: largest element count a tensor header may announce (2**31: 16 GiB of float64)
MAX_ELEMENTS = 1 << 31
#: largest serialised ``Requirements.extension`` accepted (a CIFAR-size model's tables: 168 KB)
_MAX_EXTENSION = 4 << 20


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the core; the lowering it names uses these.

    >>> import pets
    >>> pets.backend("plain").capabilities.comparisons
    True
    """

    #: exact comparisons, so ReLU, max-pool and softmax run by protocol, not polynomials
    comparisons: bool = False
    #: private @ private products, so weights can stay secret (``weights_from=r``)
    private_weights: bool = False
    #: the largest tensor rank native data holds (``None``: any rank)
    max_rank: int | None = None
    #: joint training (``model.fit``)
    training: bool = False
    #: who takes part: ``"1"`` (a key holder, who may hand evaluators a public copy),
    #: or ``"N + dealer"`` (parties holding shares)
    parties: str = "1"

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class RequirementsExtension(ABC):
    """What one family of backends needs beyond :class:`Requirements`' common fields.

    The lowering that makes it and the backends that read it define a subclass
    with a unique ``kind``; this module carries it, serialises it through
    :meth:`to_dict` / :meth:`from_dict` and never looks inside. A subclass is
    found by ``kind`` when bytes are read (:func:`pets.registry.requirements_extension`).
    """

    #: the name this extension travels under (``{"kind": ..., **to_dict()}``)
    kind: ClassVar[str] = "?"

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, without one party's own options."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequirementsExtension:
        """The inverse of :meth:`to_dict`; raises :class:`SerializationError` on bad data."""


@dataclass(frozen=True)
class Requirements:
    """What a computation needs from a backend, so its parameters and keys fit it.

    ``compile`` derives this from a model; every backend may read the common
    fields, and the backends of one lowering read its ``extension`` (the
    levelled lowering's: depth, products and precision, for HE backends).

    >>> r = Requirements(max_abs=3.0, max_rows=8, functions=("relu",))
    >>> Requirements.from_dict(r.to_dict()) == r
    True
    """

    #: largest ``|value|`` any layer produces on the example input
    max_abs: float = 0.0
    #: most samples encrypted at once
    max_rows: int = 1
    #: non-polynomial functions the computation uses (``"relu"``, ``"softmax"``...)
    functions: tuple[str, ...] = ()
    #: what the backends of one lowering need beyond these (not inspected here)
    extension: RequirementsExtension | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (for a client that has no model, only this)."""
        data: dict[str, Any] = {
            "max_abs": self.max_abs,
            "max_rows": self.max_rows,
            "functions": list(self.functions),
        }
        if self.extension is not None:
            data["extension"] = {**self.extension.to_dict(), "kind": self.extension.kind}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Requirements:
        """The inverse of :meth:`to_dict`; refuses malformed or absurd values."""
        if not isinstance(data, Mapping):
            raise SerializationError("requirements must be a JSON object")
        try:
            max_abs = float(data.get("max_abs", 0.0))
            functions = data.get("functions", [])
            if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
                raise SerializationError("requirements: functions must be a list of names")
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"requirements are malformed: {exc}") from exc
        if not np.isfinite(max_abs) or max_abs < 0:
            raise SerializationError(
                f"requirements: max_abs must be finite and >= 0, got {max_abs}"
            )
        return cls(
            max_abs=max_abs,
            max_rows=read_count(data.get("max_rows", 1), "requirements: max_rows", 1),
            functions=tuple(functions),
            extension=_read_extension(data.get("extension")),
        )


def read_count(value: Any, what: str, low: int = 0) -> int:
    """``value`` if it is an integer in ``[low, MAX_ELEMENTS]``, else a SerializationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= MAX_ELEMENTS):
        raise SerializationError(
            f"{what} must be an integer in [{low}, {MAX_ELEMENTS}], got {value!r}"
        )
    return value


def _read_extension(data: Any) -> RequirementsExtension | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
        raise SerializationError("requirements: extension must be an object with a 'kind'")
    if len(json.dumps(data, default=str)) > _MAX_EXTENSION:
        raise SerializationError(
            f"requirements: extension must be a JSON object of at most {_MAX_EXTENSION} bytes"
        )
    from pets.registry import requirements_extension

    fields = {k: v for k, v in data.items() if k != "kind"}
    return requirements_extension(data["kind"]).from_dict(fields)


class Backend(ABC):
    """Base class of every backend; see the module docstring for the contract."""

    name: ClassVar[str] = "?"
    #: largest absolute error against the plain backend on values in [-1, 1]
    #: after the conformance suite's operations; tests hold each backend to it
    tolerance: ClassVar[float] = 0.0
    #: packings this backend offers; the first is the default
    layouts: ClassVar[tuple[str, ...]] = ("dense",)
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the lowering ``pets.compile`` hands a model to for this backend (a name in
    #: :func:`pets.compiler.lowerings.lowering_named`): ``"exact"`` (op by op) or ``"levelled"``
    #: (fused affine maps and polynomials, for HE backends)
    lowering: ClassVar[str] = "exact"

    def __init__(self, *, key_id: str | None = None) -> None:
        self.key_id = key_id or secrets.token_hex(8)

    # ---- the public API (the wrapping itself lives in pets.tensor) ---------------------

    def encrypt(
        self, data: Any, *, src: int | None = None, layout: str | None = None
    ) -> PrivateTensor:
        """Encrypt (or secret-share) a numpy array or torch tensor.

        ``src=r`` names the party whose data it is; under MPC every party calls
        this and the others pass ``None`` (the shape travels from party ``r``).

        >>> import pets
        >>> be = pets.backend("plain")
        >>> be.encrypt([[1.0, 2.0]]).shape
        (1, 2)
        """
        from pets.tensor import encrypt

        return encrypt(self, data, src=src, layout=layout)

    def encrypt_for(
        self, data: Any, requirements: Requirements, *, src: int | None = None,
        layout: str | None = None,
    ) -> PrivateTensor:
        """Encrypt an input of a computation with these requirements (a compiled model's):
        the backend chooses how to pack it (e.g. by batch size, or for the model's first
        layer).
        """
        from pets.tensor import encrypt

        return encrypt(self, data, src=src, layout=layout, requirements=requirements)

    def decrypt(self, tensor: PrivateTensor, *, to: int | None = None) -> Any:
        """Decrypt (or reveal) a private tensor to a numpy array of its shape.

        ``to=r`` reveals to party ``r`` only (the others get ``None``); by default
        every party learns the result.
        """
        from pets.tensor import decrypt

        return decrypt(self, tensor, to=to)

    def load_tensor(self, data: bytes, *, key: bytes | None = None) -> PrivateTensor:
        """Load a tensor serialised with ``PrivateTensor.to_bytes()`` under this backend's keys
        (``key``: the HMAC key it was authenticated with, if any)."""
        from pets.tensor import load_tensor

        return load_tensor(self, data, key=key)

    def tensor_to_bytes(self, tensor: PrivateTensor, *, key: bytes | None = None) -> bytes:
        """Serialise a tensor (ciphertexts or shares; never a key); ``key`` authenticates it."""
        meta, blobs = self._dump_tensor(tensor.data)
        meta = {**meta, "shape": list(tensor.shape)}
        data = pack(Envelope("tensor", self.name, self.key_id, meta, blobs), key=key)
        record_serialized(len(data))
        return data

    @property
    def has_secret_key(self) -> bool:
        """Whether this backend can decrypt."""
        return True

    def choose_layout(self, rows: int) -> str:
        """The packing for ``rows`` samples when the caller does not say (the default here)."""
        return self.default_layout

    def add_noise(self, tensor: PrivateTensor, mechanism: Any) -> PrivateTensor:
        """``tensor`` plus ``mechanism.noise(shape)``, added where the data is (for release).

        Here the caller draws the noise and adds it homomorphically: right when
        the caller holds the key (HE output perturbation). A backend whose parties
        must not know the noise (MPC) overrides this to add noise shares instead.
        """
        return tensor + np.asarray(mechanism.noise(tuple(tensor.shape)), dtype=np.float64)

    def prepare(self, requirements: Requirements) -> None:  # noqa: B027 (optional hook)
        """Make parameters and keys fit a computation (called by ``compile``)."""

    def describe(self) -> dict[str, Any]:
        """The parameters in use, for reports and for users to check."""
        return {"backend": self.name}

    def check_same_keys(self, other: Backend) -> None:
        """Raise :class:`KeyMismatchError` unless ``other`` shares this backend's keys."""
        if other.name != self.name or other.key_id != self.key_id:
            raise KeyMismatchError(
                f"tensors from different backends or keys cannot be mixed "
                f"({self.name} key {self.key_id} vs {other.name} key {other.key_id}); "
                "encrypt every operand with the same backend object (or its .public() copy)"
            )

    def to_bytes(self, *, include_secret_key: bool = False, key: bytes | None = None) -> bytes:
        """Serialise parameters and keys.

        The secret key is left out unless ``include_secret_key=True``: send the
        default bytes to a server, keep the others (they decrypt everything) private.
        ``key`` (16+ bytes) authenticates the bytes with HMAC-SHA256 (``load_backend(key=)``).
        """
        meta, blobs = self._dump_keys(include_secret_key=include_secret_key)
        data = pack(Envelope("backend", self.name, self.key_id, meta, blobs), key=key)
        record_serialized(len(data))
        return data

    # ---- parties -------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This process's party number (0 for single-party backends)."""
        return 0

    @property
    def parties(self) -> int:
        """How many parties hold the data (1 for single-party backends)."""
        return 1

    @classmethod
    def party_runtime(cls) -> PartyRuntime | None:
        """How :func:`pets.run_parties` starts this backend's parties (``None``: one process).

        A multi-party backend returns an object with ``configs(...)`` (one configuration
        per process) and ``run(config, body)`` (join, run the party, leave): see
        :class:`pets.parties.PartyRuntime`.
        """
        return None

    def share_public(self, value: Any, *, src: int = 0) -> Any:
        """A public value (calibrated ranges, a plan) that every party takes from party ``src``,
        so that all run the same protocol; with one party, ``value`` itself."""
        return value

    def check_party(self, party: int | None, what: str) -> int | None:
        """``party`` if it names one of this backend's parties, else a :class:`PartyError`."""
        if party is None:
            return None
        if isinstance(party, bool) or not isinstance(party, (int, np.integer)) or not (
            0 <= int(party) < self.parties
        ):
            raise PartyError(
                f"{what}={party!r} names no party: this {self.name} backend has "
                f"{self.parties} part{'y' if self.parties == 1 else 'ies'} "
                f"(ranks 0..{self.parties - 1})"
            )
        return int(party)

    # ---- core primitives -------------------------------------------------------------

    @abstractmethod
    def _encrypt(
        self, array: np.ndarray | None, *, src: int | None, layout: str,
        requirements: Requirements | None = None,
    ) -> Native:
        """Native data for ``array`` (``None`` on parties other than ``src``); ``requirements``
        are those of the computation it is an input of, if known (a packing hint)."""

    @abstractmethod
    def _decrypt(self, native: Native, *, to: int | None) -> np.ndarray | None:
        """The values of ``native`` in its native shape (``None`` for parties not ``to``)."""

    @abstractmethod
    def add(self, a: Native, b: Native) -> Native: ...

    @abstractmethod
    def add_plain(self, a: Native, plain: np.ndarray) -> Native: ...

    @abstractmethod
    def multiply(self, a: Native, b: Native) -> Native: ...

    @abstractmethod
    def multiply_plain(self, a: Native, plain: np.ndarray) -> Native: ...

    @abstractmethod
    def negate(self, a: Native) -> Native: ...

    @abstractmethod
    def matmul_plain(self, a: Native, matrix: np.ndarray) -> Native: ...

    @abstractmethod
    def sum(self, a: Native, axes: tuple[int, ...], shape: tuple[int, ...]) -> Native:
        """Sum over ``axes`` of the user's ``shape`` (non-negative, ascending), dropping them."""

    @abstractmethod
    def native_shape(self, a: Native) -> tuple[int, ...]: ...

    @abstractmethod
    def layout_of(self, a: Native) -> str: ...

    @abstractmethod
    def public(self) -> Backend:
        """A copy of this backend without the secret key: it encrypts and evaluates only."""

    @abstractmethod
    def _dump_tensor(self, a: Native) -> tuple[dict[str, Any], list[bytes]]: ...

    @abstractmethod
    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> Native: ...

    @abstractmethod
    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]: ...

    @classmethod
    @abstractmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend: ...

    # ---- optional primitives: declared in capabilities ------------------------------------

    def _unsupported(self, operation: str, why: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"the {self.name} backend cannot {operation}: {why}")

    def plain_view(self, plain: np.ndarray, shape: tuple[int, ...], native: Native) -> np.ndarray:
        """A plain operand already checked to broadcast to ``shape``, laid out for ``native``."""
        return plain

    def matmul(self, a: Native, b: Native) -> Native:
        """``a @ b`` of two private operands (capability ``private_weights``)."""
        raise self._unsupported(
            "multiply two private matrices",
            "it multiplies private data by plain matrices only; use pets.backend('mpc') "
            "to keep both operands secret",
        )

    def less_than_zero(self, a: Native) -> Native:
        """Private 1.0 where ``a < 0``, else 0.0 (capability ``comparisons``)."""
        raise self._unsupported(
            "compare private values",
            "comparisons, ReLU, max and softmax need an MPC or plaintext backend; under HE "
            "pets.compile replaces activations with polynomials",
        )

    def reshape(self, a: Native, old: tuple[int, ...], new: tuple[int, ...]) -> Native:
        """The same values in shape ``new`` (row-major order)."""
        raise self._unsupported(f"reshape {old} to {new}", "its packing fixes the layout")

    def transpose(self, a: Native, axes: tuple[int, ...], shape: tuple[int, ...]) -> Native:
        """Axes permuted as ``numpy.transpose(a, axes)``."""
        raise self._unsupported(
            f"transpose a {shape} tensor", "its packing fixes the layout; transpose the plain "
            "data before encrypting"
        )

    def take(self, a: Native, index: Any, shape: tuple[int, ...]) -> Native:
        """``a[index]`` for a normalised numpy basic index (ints and slices)."""
        raise self._unsupported(f"index a {shape} tensor", "its packing fixes the layout")

    def concat(
        self, natives: Sequence[Native], axis: int, shapes: Sequence[tuple[int, ...]]
    ) -> Native:
        """The tensors joined along ``axis`` (of the user's shapes)."""
        raise self._unsupported(f"join tensors along axis {axis}", "its packing fixes the layout")

    def broadcast_to(self, a: Native, old: tuple[int, ...], new: tuple[int, ...]) -> Native:
        """``a`` repeated along its length-1 axes to shape ``new``."""
        raise self._unsupported(
            f"broadcast a {old} tensor to {new}", "its packing fixes the layout"
        )

    def conv2d(
        self, a: Native, weight: Any, *, stride: tuple[int, int], padding: tuple[int, int],
        dilation: tuple[int, int], groups: int,
    ) -> Native:
        """2-D convolution of ``(B, C, H, W)`` data by a plain array or a private weight."""
        raise self._unsupported(
            "convolve natively", "pets.compile lowers convolutions for it another way"
        )

    def repeated_step(self, key: Any) -> AbstractContextManager[None]:
        """Marks one run of a computation that repeats with the same shapes (``key``: e.g. a
        training step's batch size), so that a backend may prepare the next runs' material
        (MPC: the dealer's answers in one round trip). Default: nothing."""
        return nullcontext()

    def function(self, name: str, a: Native, **options: Any) -> Native | None:
        """An exact or engine-native ``name`` (e.g. ``"exp"``), or ``None``: then pets uses
        its own approximation, written once in :mod:`pets.functions` on the core primitives."""
        return None

    # ---- helpers ---------------------------------------------------------------------

    @property
    def default_layout(self) -> str:
        """The packing ``encrypt`` uses when none is named."""
        return self.layouts[0]

    def _check_layout(self, layout: str | None) -> str:
        if layout is None:
            return self.default_layout
        if layout not in self.layouts:
            raise ValueError(
                f"{self.name} backend has no layout {layout!r}; choose one of: "
                f"{', '.join(self.layouts)}"
            )
        return layout

    def __repr__(self) -> str:
        secret = "with secret key" if self.has_secret_key else "public"
        return f"<{type(self).__name__} {self.name} key={self.key_id} {secret}>"
