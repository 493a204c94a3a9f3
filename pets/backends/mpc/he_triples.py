"""Provider ``"he"``: the two parties make CrypTen's Beaver triples themselves, under BFV.

No dealer: each party draws its own shares ``a_i, b_i`` from the operating
system's generator, computes ``a_i * b_i`` locally, and the cross terms
``a_0 b_1 + a_1 b_0`` come from :mod:`pets.bfv.ole` (each party encrypts its
``a_i`` under its own key, the other multiplies by its ``b_j`` in the clear,
masks, re-randomises and floods). What each request needs:

=================  =========================================================
request            how
=================  =========================================================
additive triple    products mod ``2^64`` (CRT over three BFV plaintext moduli);
                   ``matmul`` and ``conv1d/2d`` expand into elementwise
                   products and sum them after the shares are made
square             the same with ``x = y = r_i`` (``2 r_0 r_1``)
binary triple      bitwise: each of the 64 bits of a word is one slot
                   (``x y XOR s``), so XOR shares of ``a & b``
B2A random bit     ``r = r_0 XOR r_1``; arithmetic ``r_0 + r_1 - 2 r_0 r_1``
wraps (``wrap_rng``)  not needed: with two parties CrypTen truncates locally
=================  =========================================================

The work is done on demand, when CrypTen asks, but counted apart: its bytes
and rounds go to ``Measurement.extra["offline_bytes"/"offline_rounds"]``, its
time to ``extra["offline_seconds"]``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pets.backends.mpc._crypten import load_crypten
from pets.bfv.expand import expand
from pets.bfv.ole import agree_on_keys, cross_ands, cross_products
from pets.bfv.parameters import ARITHMETIC, BITS
from pets.bfv.randomness import uniform_bytes
from pets.bfv.scheme import Keys
from pets.errors import ParameterError, ProtocolError
from pets.measure import record_extra

__all__ = ["HomomorphicTriples", "install", "uninstall"]

_log = logging.getLogger(__name__)
_KEY = "__SUPPORTED_PROVIDERS"  # crypten.mpc's table of providers, by cfg.mpc.provider


def _torch() -> Any:
    import torch

    return torch


class PartyChannel:
    """The two parties' link for offline traffic: counted apart from the online bytes."""

    def __init__(self, communicator: Any) -> None:
        self.comm = communicator
        self.rank = communicator.get_rank()

    def exchange(self, blobs: list[bytes]) -> list[bytes]:
        from pets.backends.mpc.communicator import OFFLINE

        peer = 1 - self.rank
        if self.rank == 0:
            self.comm.send_obj(blobs, peer, OFFLINE)
            return self.comm.recv_obj(peer, OFFLINE)  # type: ignore[no-any-return]
        theirs = self.comm.recv_obj(peer, OFFLINE)
        self.comm.send_obj(blobs, peer, OFFLINE)
        return theirs  # type: ignore[no-any-return]


def random_ring(shape: tuple[int, ...]) -> Any:
    """Uniform int64 ring elements from ``os.urandom`` (a cryptographic source)."""
    count = int(np.prod(shape, dtype=np.int64))
    words = uniform_bytes(count, 8).view("<i8").reshape(shape)
    return _torch().from_numpy(words.copy())


def _unsigned(tensor: Any) -> np.ndarray:
    return tensor.contiguous().numpy().reshape(-1).view(np.uint64)


def _signed(values: np.ndarray, shape: tuple[int, ...]) -> Any:
    return _torch().from_numpy(values.view(np.int64).reshape(shape).copy())


class HomomorphicTriples:
    """CrypTen's tuple-provider interface, answered by the two parties under BFV."""

    NAME = "HE"

    def __init__(self, communicator: Any) -> None:
        if communicator.get_world_size() != 2:
            raise ParameterError("provider 'he' runs between exactly two parties")
        self.channel = PartyChannel(communicator)
        self._keys: dict[str, Keys] = {}

    def _keys_for(self, name: str) -> Keys:
        if name not in self._keys:
            keys = Keys(ARITHMETIC if name == "arithmetic" else BITS)
            agree_on_keys(self.channel, keys)
            self._keys[name] = keys
        return self._keys[name]

    def _timed(self, work: Any) -> Any:
        start = time.perf_counter()
        try:
            return work()
        finally:
            record_extra("offline_seconds", time.perf_counter() - start)

    def _products(self, x: Any, y: Any) -> np.ndarray:
        return cross_products(self.channel, self._keys_for("arithmetic"), _unsigned(x),
                              _unsigned(y))

    # --- CrypTen's provider methods ------------------------------------------------

    def generate_additive_triple(self, size0: Any, size1: Any, op: str, device: Any = None,
                                 *args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        def work() -> tuple[Any, Any, Any]:
            torch = _torch()
            a, b = random_ring(tuple(size0)), random_ring(tuple(size1))
            left, right, reduce = expand(op, a, b, kwargs)
            cross = _signed(self._products(left, right), tuple(left.shape))
            c = getattr(torch, op)(a, b, *args, **kwargs) + reduce(cross)
            return tuple(self._arithmetic(t, device) for t in (a, b, c))  # type: ignore[return-value]

        return self._timed(work)  # type: ignore[no-any-return]

    def square(self, size: Any, device: Any = None) -> tuple[Any, Any]:
        def work() -> tuple[Any, Any]:
            r = random_ring(tuple(size))
            cross = _signed(self._products(r, r), tuple(r.shape))
            return self._arithmetic(r, device), self._arithmetic(r * r + cross, device)

        return self._timed(work)  # type: ignore[no-any-return]

    def generate_binary_triple(self, size0: Any, size1: Any,
                               device: Any = None) -> tuple[Any, Any, Any]:
        def work() -> tuple[Any, Any, Any]:
            torch = _torch()
            a, b = random_ring(tuple(size0)), random_ring(tuple(size1))
            left, right = torch.broadcast_tensors(a, b)
            bits = np.unpackbits(_unsigned(left).view(np.uint8)).astype(np.uint64)
            other = np.unpackbits(_unsigned(right).view(np.uint8)).astype(np.uint64)
            shares = cross_ands(self.channel, self._keys_for("bits"), bits, other)
            packed = np.packbits(shares.astype(np.uint8)).view(np.uint64)
            c = (left & right) ^ _signed(packed, tuple(left.shape))
            return tuple(self._binary(t, device) for t in (a, b, c))  # type: ignore[return-value]

        return self._timed(work)  # type: ignore[no-any-return]

    def B2A_rng(self, size: Any, device: Any = None) -> tuple[Any, Any]:
        def work() -> tuple[Any, Any]:
            r = random_ring(tuple(size)) & 1
            both = _signed(self._products(r, r), tuple(r.shape))  # 2 r_0 r_1
            return self._arithmetic(r - both, device), self._binary(r, device)

        return self._timed(work)  # type: ignore[no-any-return]

    def wrap_rng(self, size: Any, device: Any = None) -> tuple[Any, Any]:
        raise ProtocolError("provider 'he' serves two parties, whose truncation needs no wraps; "
                            "wrap_rng is for three or more parties (use provider 'ttp')")

    # --- wrapping ----------------------------------------------------------------

    @staticmethod
    def _arithmetic(share: Any, device: Any) -> Any:
        from crypten.mpc.primitives import ArithmeticSharedTensor

        return ArithmeticSharedTensor.from_shares(share.to(device or "cpu"), precision=0)

    @staticmethod
    def _binary(share: Any, device: Any) -> Any:
        from crypten.mpc.primitives import BinarySharedTensor

        return BinarySharedTensor.from_shares(share.to(device or "cpu"))

    # CrypTen's tracing hooks (its TupleProvider's interface): no cache here
    def trace(self, tracing: bool = True) -> None:
        if tracing:
            raise ProtocolError("provider 'he' makes triples on demand; it does not trace")

    def trace_once(self) -> None:
        self.trace(True)

    def fill_cache(self) -> None:
        return None


def install(communicator: Any) -> Any:
    """Put this run's provider in CrypTen's table under ``"HE"``; returns what it replaced."""
    table = getattr(load_crypten().mpc, _KEY)
    previous = table.get("HE")
    table["HE"] = HomomorphicTriples(communicator)
    return previous


def uninstall(previous: Any) -> None:
    getattr(load_crypten().mpc, _KEY)["HE"] = previous
