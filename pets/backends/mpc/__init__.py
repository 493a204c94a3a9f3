"""Secure multi-party computation on CrypTen: arithmetic secret shares among N parties.

Every value is split into random shares, one per party; no party (nor the
dealer) sees a value unless the parties reveal it. Additions and products
with plain numbers are local; a product of two private values costs one
round (Beaver triples from the dealer); comparisons, and so ReLU, max-pool
and the maximum in softmax, run CrypTen's binary-circuit protocol. Numbers
are fixed-point: ``precision`` fractional bits (16: steps of 1.5e-5).

Inside :func:`pets.run_parties` (or ``pets party``) each process gets its
party's backend. Outside, ``pets.backend("mpc")`` computes in this one
process (CrypTen's single-process mode): the same arithmetic, for quick use
and tests, with no secrecy at all — it warns and says so in ``describe()``.

>>> import numpy as np, pets, warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     be = pets.backend("mpc")
>>> x = be.encrypt(np.array([[1.0, -2.0]]))
>>> np.round(be.decrypt(x.relu() * 3.0), 3).tolist()
[[3.0, 0.0]]

Options (keywords): ``parties`` and ``provider`` (checked against the run;
set them in :func:`pets.run_parties`), ``precision`` (fixed-point bits,
default 16), ``device`` (``"cpu"`` or ``"cuda"``).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import numpy as np

from pets.backends.base import Backend, Capabilities, Requirements
from pets.backends.mpc import engine
from pets.backends.mpc._crypten import load_crypten
from pets.backends.mpc.launch import MPCRuntime
from pets.errors import (
    InsecureProviderWarning,
    MissingKeyError,
    ParameterError,
    PartyError,
    SerializationError,
    ShapeMismatchError,
    ValueRangeError,
)
from pets.parties import PartyRuntime
from pets.registry import register_backend

__all__ = ["MPCBackend", "load_crypten"]

#: the most dimensions a shared tensor's header carries when its shape travels
_MAX_RANK = 8


def _torch() -> Any:
    import torch

    return torch


@contextmanager
def _both(first: AbstractContextManager[None], second: AbstractContextManager[None]
          ) -> Iterator[None]:
    with first, second:
        yield


@register_backend("mpc")
class MPCBackend(Backend):
    """N parties on CrypTen secret shares; this object is one party's view."""

    #: fixed-point error after the conformance suite's operations on values in [-1, 1]
    tolerance: ClassVar[float] = 2e-3
    layouts: ClassVar[tuple[str, ...]] = ("shares",)
    capabilities: ClassVar[Capabilities] = Capabilities(
        comparisons=True, private_weights=True,
        max_rank=None, training=True, parties="N + a dealer",
    )

    def __init__(
        self,
        *,
        parties: int | None = None,
        provider: str | None = None,
        precision: int | None = None,
        device: str | None = None,
        key_id: str | None = None,
        public: bool = False,
    ) -> None:
        self._crypten = load_crypten()
        config = engine.current()
        if (config is None or config.single_process) and parties not in (None, 1):
            raise ParameterError(
                f"pets.backend('mpc', parties={parties}) outside a multi-party run: start "
                f"the parties with pets.run_parties(fn, parties={parties}) (or `pets party`) "
                "and use party.backend there"
            )
        if config is None:
            warnings.warn(
                "pets.backend('mpc') outside pets.run_parties computes in this one process "
                "(CrypTen's single-process mode): the arithmetic of MPC, with no secrecy",
                InsecureProviderWarning, stacklevel=3,
            )
            config = engine.start_single_process(precision or 16, device or "cpu")
        self._config = config
        for option, value, actual in (
            ("parties", parties, config.parties), ("provider", provider, config.provider),
            ("precision", precision, config.precision_bits), ("device", device, config.device),
        ):
            if value is not None and value != actual:
                raise ParameterError(
                    f"pets.backend('mpc', {option}={value!r}) inside a run started with "
                    f"{option}={actual!r}; set it once, in pets.run_parties(...)"
                )
        super().__init__(key_id=key_id or self._run_id())
        self._public = public

    def _run_id(self) -> str:
        """The same label on every party (rank 0 draws it), so their tensors go together."""
        token = secrets.token_hex(8)
        if self._config.parties == 1:
            return f"local-{token}"
        chosen = engine.communicator().broadcast_obj(token if self.rank == 0 else None, 0)
        return f"run-{chosen}"

    # ---- the run ---------------------------------------------------------------------

    @classmethod
    def party_runtime(cls) -> PartyRuntime:
        """One process per party and a dealer (provider ``"ttp"``): :mod:`.launch`."""
        return MPCRuntime()

    @property
    def rank(self) -> int:
        return self._config.rank

    @property
    def parties(self) -> int:
        return self._config.parties

    @property
    def has_secret_key(self) -> bool:
        return not self._public

    def share_public(self, value: Any, *, src: int = 0) -> Any:
        """Party ``src``'s ``value`` on every party (one broadcast; it is public)."""
        self.check_party(src, "src")
        if self.parties == 1:
            return value
        return engine.communicator().broadcast_obj(value if self.rank == src else None, src)

    def public(self) -> MPCBackend:
        """A view that computes but does not take part in revealing."""
        copy = object.__new__(MPCBackend)
        copy.__dict__.update(self.__dict__)
        copy._public = True
        return copy

    def describe(self) -> dict[str, Any]:
        config = self._config
        mode = (
            "single process: every share is in this process, nothing is secret"
            if config.single_process else
            f"party {config.rank} of {config.parties}"
        )
        return {
            "backend": self.name, "mode": mode, "parties": config.parties,
            "provider": config.provider, "provider_trust": engine.PROVIDERS[config.provider],
            "precision_bits": config.precision_bits, "device": config.device,
            "timeout_s": config.timeout,
        }

    # ---- sharing and revealing ---------------------------------------------------------

    def _encrypt(
        self, array: np.ndarray | None, *, src: int | None, layout: str,
        requirements: Requirements | None = None,
    ) -> Any:
        torch = _torch()
        if src is None:
            if self.parties > 1:
                raise PartyError(
                    f"encrypt under {self.parties} parties needs src=: the rank of the party "
                    "whose data it is (that party passes the data, the others pass None)"
                )
            src = 0
        if array is not None:
            self._check_range(array)
        shape = self._agree_on_shape(array, src)
        values = torch.zeros(shape, dtype=torch.float64) if array is None else torch.from_numpy(
            np.ascontiguousarray(array)
        )
        return self._crypten.mpc.MPCTensor(values.to(self._config.device), src=src)

    def _check_range(self, array: np.ndarray) -> None:
        """Refuse values the fixed-point encoding would wrap around (silently wrong otherwise)."""
        bits = self._config.precision_bits
        limit = 2.0 ** (62 - bits)
        largest = float(np.max(np.abs(array))) if array.size else 0.0
        if largest >= limit:
            raise ValueRangeError(
                f"values up to {largest:.3g} exceed {limit:.3g}, the largest the MPC fixed-point "
                f"encoding holds with {bits} fractional bits in its 64-bit ring; scale the data "
                "down (e.g. standardise it), or use fewer precision bits"
            )

    def _agree_on_shape(self, array: np.ndarray | None, src: int) -> tuple[int, ...]:
        """Party ``src`` tells the others its shape; every party checks they all agree on src."""
        if self.parties == 1:
            assert array is not None
            return tuple(array.shape)
        torch = _torch()
        header = torch.full((2 + _MAX_RANK,), -1, dtype=torch.int64)
        header[0] = src
        if array is not None:
            if array.ndim > _MAX_RANK:
                raise ShapeMismatchError(
                    f"encrypt under MPC takes up to {_MAX_RANK} dimensions, got {array.shape}"
                )
            header[1] = array.ndim
            header[2 : 2 + array.ndim] = torch.tensor(array.shape)
        headers = engine.communicator().all_gather(header)
        sources = {int(h[0]) for h in headers}
        if len(sources) > 1:
            raise PartyError(
                f"the parties called encrypt with different src ({sorted(sources)}); every "
                "party must name the same source party for the same tensor"
            )
        holders = [rank for rank, h in enumerate(headers) if int(h[1]) >= 0]
        if holders != [src]:
            raise PartyError(
                f"encrypt(..., src={src}): parties {holders} passed data; exactly party {src} "
                "passes its data and every other party passes None"
            )
        sent = headers[src]
        return tuple(int(n) for n in sent[2 : 2 + int(sent[1])])

    def _decrypt(self, native: Any, *, to: int | None) -> np.ndarray | None:
        if self._public:
            raise MissingKeyError("this is a public view of the mpc backend; reveal with the "
                                  "party's own backend (party.backend)")
        revealed = native.reveal(dst=to)
        if to is not None and self.rank != to:
            return None
        return self._decode(revealed, native.encoder.scale)

    @staticmethod
    def _decode(revealed: Any, scale: int) -> np.ndarray:
        """Ring integers to reals: ``value / scale`` in float64.

        Not CrypTen's ``FixedPointEncoder.decode``: for negative values it floor-divides
        by ``scale - 1`` instead of ``scale``, so a value just above a negative integer
        (e.g. -71.9997) decodes 1.0 too low (-72.9997): 16 in 100,000 products measured.
        """
        integers = revealed.cpu().numpy().astype(np.float64)  # exact below 2**53
        return integers / float(scale)

    # ---- arithmetic: CrypTen's protocols -------------------------------------------------

    def _plain(self, plain: np.ndarray) -> Any:
        """Integral scalars stay integers (no truncation round); others become tensors."""
        if plain.ndim == 0 and float(plain) == int(plain) and abs(plain) < 2**31:
            return int(plain)
        return _torch().from_numpy(np.ascontiguousarray(plain, dtype=np.float64)).to(
            self._config.device)

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def add_plain(self, a: Any, plain: np.ndarray) -> Any:
        return a + self._plain(plain)

    def multiply(self, a: Any, b: Any) -> Any:
        return a * b

    def multiply_plain(self, a: Any, plain: np.ndarray) -> Any:
        """A small factor is scaled up by ``2^s`` for the product and divided after: encoded
        directly it would keep only a few significant bits of fixed point."""
        factor = self._plain(plain)
        largest = float(np.max(np.abs(plain))) if plain.size else 0.0
        if isinstance(factor, int) or not 0 < largest < 2.0**-6:
            return a * factor
        shift = min(int(np.floor(-np.log2(largest))), self._config.precision_bits)
        return (a * self._plain(plain * 2.0**shift)).div(2**shift)

    def negate(self, a: Any) -> Any:
        return -a

    def matmul_plain(self, a: Any, matrix: np.ndarray) -> Any:
        return a.matmul(self._plain(np.asarray(matrix)))

    def matmul(self, a: Any, b: Any) -> Any:
        return a.matmul(b)

    def sum(self, a: Any, axes: tuple[int, ...], shape: tuple[int, ...]) -> Any:
        for axis in sorted(axes, reverse=True):
            a = a.sum(axis)
        return a

    def less_than_zero(self, a: Any) -> Any:
        return a._ltz()

    def reshape(self, a: Any, old: tuple[int, ...], new: tuple[int, ...]) -> Any:
        return a.reshape(new)

    def transpose(self, a: Any, axes: tuple[int, ...], shape: tuple[int, ...]) -> Any:
        return a.permute(axes)

    def take(self, a: Any, index: Any, shape: tuple[int, ...]) -> Any:
        result = a[index]
        return result if tuple(result.size()) != () or len(shape) == 0 else result.reshape(())

    def concat(self, natives: Sequence[Any], axis: int,
               shapes: Sequence[tuple[int, ...]]) -> Any:
        return self._crypten.cat(list(natives), dim=axis)

    def broadcast_to(self, a: Any, old: tuple[int, ...], new: tuple[int, ...]) -> Any:
        return a.expand(*new)

    def conv2d(
        self, a: Any, weight: Any, *, stride: tuple[int, int], padding: tuple[int, int],
        dilation: tuple[int, int], groups: int,
    ) -> Any:
        kernel = weight if not isinstance(weight, np.ndarray) else self._plain(weight)
        return a.conv2d(kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def repeated_step(self, key: Any) -> AbstractContextManager[None]:
        """One run of a computation that repeats with the same shapes (e.g. a training step
        of one batch size): party 0 fetches its dealer requests in one round trip once two
        runs agreed on them (:mod:`pets.backends.mpc.prefetch`), and CrypTen's settings are
        read from a plain snapshot (:mod:`pets.backends.mpc.snapshot`)."""
        from pets.backends.mpc.prefetch import repeated_step
        from pets.backends.mpc.snapshot import frozen_settings

        return _both(frozen_settings(), repeated_step(key))

    def add_noise(self, tensor: Any, mechanism: Any) -> Any:
        """Each party adds ``mechanism.noise_share(shape, parts=parties)`` to its own share
        (no communication): the shares sum to exactly the mechanism's noise, and no party
        knows the total (see ``pets.dp.joint_noise`` for what a coalition learns)."""
        shape = tuple(tensor.shape)
        noise = np.asarray(mechanism.noise_share(shape, parts=self.parties), dtype=np.float64)
        native = tensor.data.clone()
        torch = _torch()
        encoded = native.encoder.encode(torch.from_numpy(noise.reshape(shape)))
        native.share = native.share + encoded.to(native.share.device)
        return tensor._wrap(native)

    def native_shape(self, a: Any) -> tuple[int, ...]:
        return tuple(int(n) for n in a.size())

    def layout_of(self, a: Any) -> str:
        return "shares"

    # ---- bytes: a party's own share, never a key ----------------------------------------

    def _dump_tensor(self, a: Any) -> tuple[dict[str, Any], list[bytes]]:
        share = a.share.cpu().contiguous()
        meta = {"dims": list(share.shape), "scale": int(a.encoder.scale), "party": self.rank}
        return meta, [share.numpy().astype("<i8").tobytes()]

    def _load_tensor(self, meta: dict[str, Any], blobs: list[bytes]) -> Any:
        torch = _torch()
        try:
            dims = [int(n) for n in meta["dims"]]
            scale, party = int(meta["scale"]), int(meta["party"])
            (blob,) = blobs
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"mpc share bytes have a malformed header: {exc}") from exc
        if party != self.rank:
            raise SerializationError(
                f"these bytes hold party {party}'s share, but this is party {self.rank}; each "
                "party loads only its own shares"
            )
        if any(n < 0 for n in dims) or len(blob) != 8 * int(np.prod(dims, dtype=object)):
            raise SerializationError("mpc share bytes do not hold the shape their header says")
        if scale < 1 or scale & (scale - 1):
            raise SerializationError(f"mpc share bytes carry scale {scale}, not a power of two")
        share = torch.from_numpy(np.frombuffer(blob, dtype="<i8").reshape(dims).copy())
        tensor = self._crypten.mpc.MPCTensor.from_shares(
            share.to(self._config.device), precision=int(np.log2(scale)))
        return tensor

    def _dump_keys(self, *, include_secret_key: bool) -> tuple[dict[str, Any], list[bytes]]:
        config = self._config
        return {"parties": config.parties, "provider": config.provider,
                "precision": config.precision_bits}, []

    @classmethod
    def _load_keys(cls, key_id: str, meta: dict[str, Any], blobs: list[bytes]) -> Backend:
        config = engine.current()
        try:
            parties, provider, precision = int(meta["parties"]), str(meta["provider"]), int(
                meta["precision"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"mpc backend bytes are malformed: {exc}") from exc
        if blobs:
            raise SerializationError("mpc backend bytes carry no key material; these do")
        if config is None or (config.parties, config.provider, config.precision_bits) != (
            parties, provider, precision
        ):
            raise SerializationError(
                f"these bytes describe an mpc run of {parties} parties ({provider}, {precision} "
                "bits); load them inside that run"
            )
        backend = object.__new__(cls)
        backend._crypten = load_crypten()
        backend._config = config
        backend._public = False
        Backend.__init__(backend, key_id=key_id)
        return backend
