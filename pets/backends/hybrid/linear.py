"""The HE linear layer: private input times the owner's plain weights, ending in shares.

Inputs arrive as MPC shares ``x = x_c + x_o`` (client, owner). The owner
computes ``op(x_o, W)`` alone. For ``op(x_c, W)`` the client encrypts its
share's entries under its BFV key (:mod:`pets.bfv.scheme`, the three 57-bit
plaintext moduli), laid out by :func:`pets.bfv.expand.expand` so that each slot
holds one product term; the owner multiplies by its weights in the clear,
adds a mask it draws, re-randomises, floods and switches down, and answers.
The client decrypts ``x_c * W + mask`` per slot. The weights are signed
fixed-point integers (``|W| < 2^w``), the share is below ``2^64``: the mask is
uniform over ``2^(65 + w + 40)`` plus an offset that keeps the sum positive,
so the opened integer is statistically (``2^-40``) independent of ``W``.
:mod:`pets.backends.hybrid.conversion` turns both sides into ring shares.

Traffic: one query (client to owner) and one response per layer, online.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pets.backends.hybrid.conversion import client_share, owner_share, to_mpc
from pets.backends.hybrid.owned import Owned
from pets.bfv.expand import expand
from pets.bfv.parameters import STATISTICAL_SECURITY
from pets.bfv.randomness import residue, uniform_bits
from pets.bfv.scheme import Keys
from pets.errors import ProtocolError, SerializationError, ValueRangeError

__all__ = ["LinearSession", "apply_owned"]


def _torch() -> Any:
    import torch

    return torch


class LinearSession:
    """One party's side of every HE linear layer in a run: its BFV keys and the link.

    The client (the party that does not own the weights) makes the keys; the
    owner gets the client's public keys once, at the first layer.
    """

    def __init__(self, communicator: Any, crypten: Any, precision: int) -> None:
        self.comm = communicator
        self.crypten = crypten
        self.rank = communicator.get_rank()
        self.precision = precision
        self.keys: Keys | None = None

    def _keys(self, owner: int) -> Keys:
        from pets.bfv.parameters import ARITHMETIC

        if self.keys is None:
            self.keys = Keys(ARITHMETIC)
            client = 1 - owner
            if self.rank == client:
                self.comm.send_obj(self.keys.public_keys(), owner)
            else:
                self.keys.accept_peer(_blobs(self.comm.recv_obj(client)))
        return self.keys

    def encode(self, values: np.ndarray) -> Any:
        scaled = np.round(np.asarray(values, dtype=np.float64) * 2.0**self.precision)
        if scaled.size and np.max(np.abs(scaled)) >= 2.0**62:
            raise ValueRangeError("the owner's weights are too large for the fixed-point ring")
        return _torch().from_numpy(scaled.astype(np.int64))


def _blobs(message: Any) -> list[bytes]:
    if not isinstance(message, list) or not all(isinstance(b, bytes) for b in message):
        raise SerializationError("the peer sent something other than a list of byte strings")
    return message


def apply_owned(session: LinearSession, op: str, shared: Any, owned: Owned,
                kwargs: dict[str, Any]) -> Any:
    """``op(shared, owned)`` as a CrypTen tensor of shares (``op``: mul, matmul, conv1d/2d)."""
    torch = _torch()
    keys = session._keys(owned.owner)
    share = shared.share
    moduli = keys.plain_moduli
    if session.rank == owned.owner:
        assert owned.values is not None
        weights = session.encode(owned.values)
        left, right, reduce = expand(op, torch.zeros_like(share), weights, kwargs)
        count = left.numel()
        label, query = session.comm.recv_obj(1 - owned.owner)
        bits = max(1, math.ceil(math.log2(float(weights.abs().max()) + 1))) if count else 1
        offset = 2 ** (65 + bits)
        mask = uniform_bits(count, 65 + bits + STATISTICAL_SECURITY)
        signed = right.reshape(-1).numpy()
        reply = keys.respond(_blobs(query), [(signed % t).astype(np.uint64) for t in moduli],
                             [(residue(mask, t) + np.uint64(offset % t)) % np.uint64(t)
                              for t in moduli], length=count, fingerprint=label)
        session.comm.send_obj(reply, 1 - owned.owner)
        mine, theirs, _ = expand(op, share, weights, kwargs)
        local = reduce(mine * theirs)  # int64 products and sums wrap modulo 2^64, as shares do
        result = owner_share(local, mask, tuple(left.shape), reduce)
    else:
        placeholder = torch.zeros(owned.shape, dtype=torch.int64)
        left, _, reduce = expand(op, share, placeholder, kwargs)
        count = left.numel()
        values = left.reshape(-1).contiguous().numpy().view(np.uint64)
        session.comm.send_obj((keys.fingerprint, keys.query([values % np.uint64(t)
                                                             for t in moduli])), owned.owner)
        opened = keys.decrypt(_blobs(session.comm.recv_obj(owned.owner)), length=count)
        result = client_share(opened, moduli, tuple(left.shape), reduce)
    if not isinstance(result, torch.Tensor):
        raise ProtocolError("the HE linear layer produced no share")
    return to_mpc(session.crypten, result, session.precision)
