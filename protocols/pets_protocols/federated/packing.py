"""Model updates as CKKS ciphertexts: the layout, the keys, and the sum the aggregator computes.

An update is a 1-D vector of ``P`` parameters. Encrypted as a ``(1, P)`` row in
the batched packing it would take one ciphertext per parameter (the batched
packing puts each *column* in its own ciphertext). Here the vector is padded to
``slots * k`` values and laid out as a ``(slots, k)`` matrix, column after
column, so it takes ``k = ceil(P / slots)`` ciphertexts: one for the 2,410
parameters of the digits MLP at ``N = 8192`` (4,096 slots).

Only additions happen on ciphertexts, so the keys have the smallest depth pets
offers (1) and no rotation keys. Before it leaves the client, each ciphertext
is brought down to the last level of the modulus chain by a product with the
plain constant 1 (what SEAL's ``mod_switch_to_next`` does to a ciphertext),
which drops one of its two primes and nearly halves its bytes; sums of such
ciphertexts stay at that level.

>>> import numpy as np, pets
>>> keys = make_keys()                               # the key authority, once
>>> server = pets.load_backend(keys.public().to_bytes())
>>> updates = [np.full(5, 0.25), np.arange(5.0)]
>>> tensors = [server.load_tensor(encrypt_vector(keys, u).to_bytes()) for u in updates]
>>> total = sum_tensors(tensors)                      # the aggregator: no secret key
>>> np.round(decrypt_vector(keys, keys.load_tensor(total.to_bytes()), 5), 6).tolist()
[0.25, 1.25, 2.25, 3.25, 4.25]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import pets

__all__ = [
    "KEY_DEPTH",
    "EncryptedLayout",
    "decrypt_vector",
    "encrypt_vector",
    "layout_for",
    "make_keys",
    "sum_tensors",
]

KEY_DEPTH = 1
"""Multiplicative depth of the federation's keys: one level, spent on the compaction."""


def make_keys() -> pets.Backend:
    """A fresh CKKS key set for a federation (made once, by the key authority).

    Hand ``keys.to_bytes(include_secret_key=True)`` to every client out of band,
    and only ``keys.public().to_bytes()`` to the aggregator.
    """
    return pets.backend("ckks", depth=KEY_DEPTH)


@dataclass(frozen=True)
class EncryptedLayout:
    """How a vector of ``size`` values sits in ciphertexts of ``slots`` slots."""

    size: int
    slots: int

    @property
    def ciphertexts(self) -> int:
        """``ceil(size / slots)``: one ciphertext per column of the ``(slots, k)`` matrix."""
        return max(1, -(-self.size // self.slots))

    def to_matrix(self, vector: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``vector`` zero-padded to ``slots * k`` and cut into ``k`` columns of ``slots``."""
        padded = np.zeros(self.slots * self.ciphertexts)
        padded[: self.size] = vector
        return padded.reshape(self.ciphertexts, self.slots).T

    def from_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The inverse of :meth:`to_matrix`."""
        return np.asarray(matrix, dtype=np.float64).T.reshape(-1)[: self.size]


def layout_for(backend: pets.Backend, size: int) -> EncryptedLayout:
    """The layout of a ``size``-vector under ``backend``'s parameters."""
    return EncryptedLayout(size, int(backend.describe()["slots"]))


def encrypt_vector(backend: pets.Backend, vector: npt.ArrayLike) -> pets.PrivateTensor:
    """Encrypt a 1-D vector in ``ceil(P / slots)`` ciphertexts at the last level."""
    values = np.asarray(vector, dtype=np.float64).ravel()
    layout = layout_for(backend, values.size)
    fresh = backend.encrypt(layout.to_matrix(values), layout="batched")
    return fresh * 1.0  # drop to the last level: fewer primes, fewer bytes on the wire


def decrypt_vector(
    backend: pets.Backend, tensor: pets.PrivateTensor, size: int
) -> npt.NDArray[np.float64]:
    """Decrypt a tensor made by :func:`encrypt_vector` (or a sum of them) back to ``size``
    values."""
    return layout_for(backend, size).from_matrix(np.asarray(backend.decrypt(tensor)))


def sum_tensors(tensors: Sequence[pets.PrivateTensor]) -> pets.PrivateTensor:
    """The element-wise sum of encrypted updates: all the aggregator ever computes."""
    if not tensors:
        raise pets.PartyError(
            "no encrypted update to sum: every client of the round failed or dropped out; "
            "check the clients' logs and start the round again"
        )
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total
