"""The backend contract: the few primitives every backend implements.

Everything a user sees — operators, polynomials, activations, layers, models —
is written once on top of these primitives (see :mod:`pets.tensor`,
:mod:`pets.polynomial`, :mod:`pets.compile`). A backend works on its own native
data, always a 2-D matrix ``(rows, cols)``: rows are samples, cols are features.
:class:`~pets.tensor.PrivateTensor` maps the user's shape onto that view.

A backend implements:

=====================  =====================================================
``_encrypt``            numpy matrix -> native data, in one of ``layouts``
``_decrypt``            native data -> numpy matrix (needs the secret key)
``add`` ``multiply``    native (+|*) native, same shape
``add_plain``           native + numpy (broadcastable to the matrix)
``multiply_plain``      native * numpy (broadcastable to the matrix)
``negate``              -native
``matmul_plain``        native @ numpy matrix ``(cols, out)``
``sum_rows``            sum over samples -> one row
``sum_cols``            sum over features -> one column
``layout_of``           which packing native data is in
``matrix_shape``        ``(rows, cols)`` of native data
``_dump_tensor`` /      native data <-> blobs + metadata (no secret)
``_load_tensor``
``_dump_keys`` /        key material <-> blobs (secret only when asked)
``_load_keys``
=====================  =====================================================
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pets.errors import KeyMismatchError, MissingKeyError, SerializationError
from pets.measure import record_serialized
from pets.serialization import Envelope, pack, unpack

if TYPE_CHECKING:
    from pets.tensor import PrivateTensor

__all__ = ["Backend", "Requirements", "load_backend"]

Native = Any


@dataclass(frozen=True)
class Requirements:
    """What a computation needs from a backend, so keys and parameters fit it.

    ``compile`` derives this from a model; a backend sizes its parameters (depth)
    and makes only the rotation keys the listed matrix products need.
    """

    depth: int = 0
    matmul_shapes: tuple[tuple[int, int], ...] = ()
    layout: str | None = None
    needs_sum: bool = False
    max_rows: int = 1
    #: ``(n, m)`` when the input feeds a single ``n x m`` product first: the backend may
    #: pack inputs for it (``Backend.encrypt(..., first_product=...)``)
    first_product: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """Base class of every backend; see the module docstring for the contract."""

    name: ClassVar[str] = "?"
    #: largest absolute error against the plain backend on values in [-1, 1]
    #: after the conformance suite's operations; tests hold each backend to it
    tolerance: ClassVar[float] = 0.0
    #: packings this backend offers; the first is the default
    layouts: ClassVar[tuple[str, ...]] = ("dense",)

    def __init__(self, *, key_id: str | None = None) -> None:
        self.key_id = key_id or secrets.token_hex(8)

    # ---- public API, written once ------------------------------------------

    def encrypt(
        self, data: Any, *, layout: str | None = None,
        first_product: tuple[int, int] | None = None,
    ) -> PrivateTensor:
        """Encrypt (or secret-share) a numpy array or torch tensor of up to 2 dimensions.

        ``first_product=(n, m)`` says the first operation will be ``@`` an
        ``n x m`` plain matrix; a backend may pack for it (``PrivateModel.encrypt``
        passes it). Such a tensor may then only be multiplied by that matrix.

        >>> import pets
        >>> be = pets.backend("plain")
        >>> be.encrypt([[1.0, 2.0]]).shape
        (1, 2)
        """
        from pets.tensor import PrivateTensor, as_matrix, plain_array

        array = plain_array(data, what="encrypt")
        chosen = self._check_layout(layout)
        native = self._encrypt(as_matrix(array), chosen, first_product=first_product)
        return PrivateTensor(self, native, array.shape)

    def decrypt(self, tensor: PrivateTensor) -> np.ndarray:
        """Decrypt (or reveal) a private tensor to a numpy array of its shape."""
        from pets.tensor import PrivateTensor

        if not isinstance(tensor, PrivateTensor):
            raise TypeError(f"decrypt expects a pets.PrivateTensor, got {type(tensor).__name__}")
        self.check_same_keys(tensor.backend)
        if not self.has_secret_key:
            raise MissingKeyError(
                f"this {self.name} backend holds no secret key (it came from .public() or "
                "was loaded without one); send the tensor's to_bytes() to the key holder "
                "and decrypt there"
            )
        return self._decrypt(tensor.data).reshape(tensor.shape)

    @property
    def has_secret_key(self) -> bool:
        """Whether this backend can decrypt."""
        return True

    def public(self) -> Backend:
        """A copy of this backend without the secret key: it can encrypt and evaluate."""
        return self

    def choose_layout(self, rows: int) -> str:
        """The packing for ``rows`` samples when the caller does not say (the default here)."""
        return self.layouts[0]

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

    def to_bytes(self, *, include_secret_key: bool = False) -> bytes:
        """Serialise parameters and keys; the secret key only when asked explicitly."""
        meta, blobs = self._dump_keys(include_secret_key=include_secret_key)
        data = pack(Envelope("backend", self.name, self.key_id, meta, blobs))
        record_serialized(len(data))
        return data

    def tensor_to_bytes(self, tensor: PrivateTensor) -> bytes:
        """Serialise a tensor (ciphertexts or shares; never a key)."""
        meta, blobs = self._dump_tensor(tensor.data)
        meta = {**meta, "shape": list(tensor.shape)}
        data = pack(Envelope("tensor", self.name, self.key_id, meta, blobs))
        record_serialized(len(data))
        return data

    def load_tensor(self, data: bytes) -> PrivateTensor:
        """Load a tensor serialised with :meth:`tensor_to_bytes` under this backend's keys."""
        from pets.tensor import PrivateTensor, as_matrix

        envelope = unpack(data, kind="tensor")
        if envelope.backend != self.name or envelope.key_id != self.key_id:
            raise KeyMismatchError(
                f"these bytes hold a {envelope.backend} tensor under key {envelope.key_id}, "
                f"but this is a {self.name} backend with key {self.key_id}; load them with "
                "the backend (or its public copy) that encrypted them"
            )
        try:
            shape = tuple(int(n) for n in envelope.meta["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError("pets tensor bytes carry no valid shape") from exc
        native = self._load_tensor(envelope.meta, envelope.blobs)
        expected = as_matrix(np.empty(shape)).shape if len(shape) <= 2 else None
        if expected != self.matrix_shape(native):
            raise SerializationError(
                f"pets tensor bytes say shape {shape} but hold a "
                f"{'x'.join(map(str, self.matrix_shape(native)))} matrix; they are corrupted"
            )
        return PrivateTensor(self, native, shape)

    # ---- primitives ----------------------------------------------------------

    @abstractmethod
    def _encrypt(
        self, matrix: np.ndarray, layout: str, *, first_product: tuple[int, int] | None = None
    ) -> Native: ...

    @abstractmethod
    def _decrypt(self, native: Native) -> np.ndarray: ...

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
    def sum_rows(self, a: Native) -> Native: ...

    @abstractmethod
    def sum_cols(self, a: Native) -> Native: ...

    @abstractmethod
    def layout_of(self, a: Native) -> str: ...

    @abstractmethod
    def matrix_shape(self, a: Native) -> tuple[int, int]: ...

    @abstractmethod
    def _dump_tensor(self, a: Native) -> tuple[dict[str, Any], list[bytes]]: ...

    @abstractmethod
    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> Native: ...

    @abstractmethod
    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]: ...

    @classmethod
    @abstractmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend: ...

    # ---- helpers -------------------------------------------------------------

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


def load_backend(data: bytes) -> Backend:
    """Load a backend serialised with :meth:`Backend.to_bytes`.

    >>> import pets
    >>> be = pets.backend("plain")
    >>> pets.load_backend(be.to_bytes()).key_id == be.key_id
    True
    """
    from pets.registry import backend_class

    envelope = unpack(data, kind="backend")
    return backend_class(envelope.backend)._load_keys(
        envelope.key_id, envelope.meta, envelope.blobs
    )
