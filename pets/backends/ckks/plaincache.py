"""A bounded LRU cache of encoded plaintexts (matrix diagonals), keyed without rehashing.

Encoding a matrix's diagonals costs more than using them, so a model's
products reuse them across calls. Entries are keyed by the matrix, the level
and the scale. A read-only matrix (a compiled model's weights are made
read-only when it is compiled) is keyed by identity, so it is never hashed;
a writable one by a digest of its bytes and shape, since it may change between
calls. The cache holds at most ``max_bytes`` of plaintexts and drops the least
recently used first.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = ["PlaintextCache", "matrix_key"]

#: default limit of a cache (encoded plaintexts are N * levels * 8 bytes each)
DEFAULT_MAX_BYTES = 512 * 2**20


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def matrix_key(matrix: np.ndarray) -> tuple[Hashable, Any]:
    """A cache key for ``matrix`` and, for identity keys, a weak reference that must stay alive."""
    root = _root(matrix)
    if not matrix.flags.writeable and not root.flags.writeable and root.base is None:
        pointer = matrix.__array_interface__["data"][0]
        return ("id", id(root), pointer, matrix.shape, matrix.strides), weakref.ref(root)
    digest = hashlib.blake2b(np.ascontiguousarray(matrix).tobytes(), digest_size=16)
    digest.update(repr((matrix.shape, str(matrix.dtype))).encode())
    return ("digest", digest.hexdigest()), None


class PlaintextCache:
    """``get_or_make(key, make, size)``: the cached value, or ``make()`` stored under ``key``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_make(self, key: Hashable, guard: Any, make: Callable[[], Any],
                    size: int | Callable[[Any], int]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (entry[2] is None or entry[2]() is not None):
                self._entries.move_to_end(key)
                return entry[0]
            if entry is not None:  # the matrix it was made for is gone: its id may be reused
                self._drop(key)
        value = make()
        if callable(size):
            size = size(value)
        with self._lock:
            if size <= self.max_bytes:
                if key in self._entries:
                    self._drop(key)
                self._entries[key] = (value, size, guard)
                self.bytes += size
                while self.bytes > self.max_bytes:
                    self._drop(next(iter(self._entries)))
        return value

    def _drop(self, key: Hashable) -> None:
        _value, size, _guard = self._entries.pop(key)
        self.bytes -= size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
