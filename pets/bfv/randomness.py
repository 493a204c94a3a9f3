"""Uniform big integers from the operating system's generator, reduced modulo word primes.

Masks and floods are wider than a machine word (a 168-bit mask, a 129-bit
flood), so they are drawn as bytes (``os.urandom``: a cryptographic source,
unlike numpy's generators) and reduced modulo each prime by Horner's rule four
bits at a time, which keeps every intermediate below ``2^64``.

>>> import numpy as np
>>> draw = uniform_bytes(3, 10)
>>> residue(draw, 97).tolist() == [int.from_bytes(bytes(row), "big") % 97 for row in draw]
True
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["low_word", "multiply_by_constant", "residue", "uniform_bits", "uniform_bytes"]

_MAX_MODULUS = 1 << 60  # 16 * m + 15 * m stays below 2^64 for m below 2^59; see callers


def uniform_bytes(count: int, width: int) -> np.ndarray:
    """``count`` uniform integers of ``width`` bytes each, big-endian rows of uint8."""
    return np.frombuffer(os.urandom(count * width), dtype=np.uint8).reshape(count, width).copy()


def uniform_bits(count: int, bits: int) -> np.ndarray:
    """``count`` uniform integers in ``[0, 2^bits)`` as big-endian byte rows."""
    width = (bits + 7) // 8
    rows = uniform_bytes(count, width)
    spare = 8 * width - bits
    if spare:
        rows[:, 0] &= np.uint8((1 << (8 - spare)) - 1)
    return rows


def residue(rows: np.ndarray, modulus: int) -> np.ndarray:
    """Each big-endian byte row as an integer, modulo ``modulus`` (below ``2^60``)."""
    if not 1 < modulus < _MAX_MODULUS:
        raise ValueError(f"modulus must be 2 to 2^60, got {modulus}")
    m = np.uint64(modulus)
    acc = np.zeros(rows.shape[0], dtype=np.uint64)
    sixteen = np.uint64(16)
    for column in range(rows.shape[1]):
        byte = rows[:, column].astype(np.uint64)
        acc = (acc * sixteen + (byte >> np.uint64(4))) % m
        acc = (acc * sixteen + (byte & np.uint64(15))) % m
    return acc


def low_word(rows: np.ndarray) -> np.ndarray:
    """Each big-endian byte row's lowest 64 bits (the integer mod ``2^64``), as uint64."""
    tail = rows[:, -8:]
    if tail.shape[1] < 8:
        tail = np.concatenate([np.zeros((rows.shape[0], 8 - tail.shape[1]), np.uint8), tail], 1)
    return np.ascontiguousarray(tail).view(">u8").reshape(-1).astype(np.uint64)


def multiply_by_constant(values: np.ndarray, constant: int, modulus: int) -> np.ndarray:
    """``values * constant mod modulus`` for values below ``modulus < 2^59``, in uint64."""
    if not 1 < modulus < 1 << 59:
        raise ValueError(f"modulus must be 2 to 2^59, got {modulus}")
    m = np.uint64(modulus)
    acc: np.ndarray = np.zeros_like(values, dtype=np.uint64)
    for digit in format(constant % modulus, "x"):
        acc = (acc * np.uint64(16) + values * np.uint64(int(digit, 16))) % m
    return acc
