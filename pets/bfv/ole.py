"""Two-party oblivious products under BFV: each party ends with a share, neither learns more.

Both parties run the same call at the same time, each with its own ``x`` and
``y``; both act once as querier (its ``x``, encrypted) and once as responder
(its ``y``, in the clear on its side). The result is this party's share of the
cross terms ``x_0 y_1 + x_1 y_0``; a caller adds its own ``x_i y_i`` locally.

* :func:`cross_products`: shares modulo ``2^64`` (CrypTen's ring). The responder
  masks the exact integer product (below ``2^128``) with a uniform 168-bit
  integer (statistical distance ``2^-40``), computed modulo three 57-bit
  plaintext moduli; the querier recovers the masked integer by CRT and reduces
  it mod ``2^64``, the responder keeps minus the mask's low word. Exact: no
  wrap-around in any plaintext modulus, no bias (the shares are exact mod 2^64).
* :func:`cross_ands`: XOR shares of ``x_0 y_1 ^ x_1 y_0`` on bits. The
  responder returns ``(x y) XOR s = x y (1 - 2 s) + s`` for a uniform bit ``s``
  of its own: the querier sees a uniform bit, whatever ``y`` is.

``channel.exchange(blobs)`` sends this party's list of byte strings and returns
the peer's (see :class:`Channel`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pets.bfv.parameters import STATISTICAL_SECURITY
from pets.bfv.randomness import low_word, multiply_by_constant, residue, uniform_bits
from pets.bfv.scheme import Keys
from pets.errors import SerializationError

__all__ = ["Channel", "agree_on_keys", "cross_ands", "cross_products", "from_residues"]

#: bits of the responder's mask: a 128-bit product hidden to 2^-40
MASK_BITS = 128 + STATISTICAL_SECURITY


class Channel(Protocol):
    """A link to the other party that swaps lists of byte strings, one list each way."""

    def exchange(self, blobs: list[bytes]) -> list[bytes]: ...


def agree_on_keys(channel: Channel, keys: Keys) -> None:
    """Swap public keys with the peer (once per parameter set, before any product)."""
    keys.accept_peer(_checked(channel.exchange(keys.public_keys())))


def _checked(blobs: object) -> list[bytes]:
    if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
        raise SerializationError("the peer sent something other than a list of byte strings")
    return blobs


def from_residues(residues: list[np.ndarray], moduli: list[int]) -> np.ndarray:
    """The integer below ``prod(moduli)`` with these residues, modulo ``2^64`` (Garner's CRT).

    >>> moduli = [97, 101, 103]
    >>> from_residues([np.array([500000 % m], dtype=np.uint64) for m in moduli], moduli).tolist()
    [500000]
    """
    digits: list[np.ndarray] = []
    for index, modulus in enumerate(moduli):
        value = residues[index] % np.uint64(modulus)
        for previous, digit in zip(moduli, digits, strict=False):
            difference = (value + np.uint64(modulus) - digit % np.uint64(modulus)) % np.uint64(
                modulus)
            value = multiply_by_constant(difference, pow(previous, -1, modulus), modulus)
        digits.append(value)
    total: np.ndarray = np.zeros_like(residues[0], dtype=np.uint64)
    weight = 1
    for modulus, digit in zip(moduli, digits, strict=True):
        total = total + digit * np.uint64(weight % 2**64)  # wraps mod 2^64, as wanted
        weight *= modulus
    return total


def cross_products(channel: Channel, keys: Keys, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """This party's share modulo ``2^64`` of ``x_0 * y_1 + x_1 * y_0`` (uint64 vectors)."""
    count = len(x)
    moduli = keys.plain_moduli
    theirs = _checked(channel.exchange(keys.query([x % np.uint64(t) for t in moduli])))
    mask = uniform_bits(count, MASK_BITS)
    reply = keys.respond(theirs, [y % np.uint64(t) for t in moduli],
                         [residue(mask, t) for t in moduli], length=count)
    opened = keys.decrypt(_checked(channel.exchange(reply)), length=count)
    return from_residues(opened, moduli) - low_word(mask)  # uint64: wraps mod 2^64


def cross_ands(channel: Channel, keys: Keys, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """This party's XOR share of ``x_0 & y_1 ^ x_1 & y_0`` (vectors of 0/1 as uint64)."""
    count = len(x)
    (t,) = keys.plain_moduli
    theirs = _checked(channel.exchange(keys.query([x])))
    flip = uniform_bits(count, 1)[:, 0].astype(np.uint64)
    times = np.where(y == 1, np.where(flip == 1, np.uint64(t - 1), np.uint64(1)), np.uint64(0))
    reply = keys.respond(theirs, [times], [flip], length=count)
    (opened,) = keys.decrypt(_checked(channel.exchange(reply)), length=count)
    return (opened & np.uint64(1)) ^ flip
