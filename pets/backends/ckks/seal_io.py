"""SEAL objects to and from bytes, validated before SEAL parses them.

TenSEAL's SEAL bindings save and load through files only, and SEAL's loaders
trust the sizes written inside the data. Here every blob's SEAL header (magic,
version, compression, declared size) is checked first, and SEAL's opaque
errors come back as :class:`~pets.errors.SerializationError`.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Any, TypeVar

from pets.errors import SerializationError

__all__ = ["check_header", "dump", "load"]

_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
_MAGIC = 0xA15E
_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None

T = TypeVar("T")


def check_header(blob: bytes, what: str) -> None:
    """Raise unless ``blob`` starts with a SEAL header whose size matches the blob."""
    if len(blob) < _HEADER.size:
        raise SerializationError(f"{what} is truncated: {len(blob)} bytes is less than a header")
    magic, header_size, major, _minor, compression, _reserved, size = _HEADER.unpack_from(blob)
    if magic != _MAGIC or header_size != _HEADER.size:
        raise SerializationError(f"{what} is not a SEAL object (bad magic); it is corrupted")
    if major != 4:
        raise SerializationError(f"{what} was written by SEAL {major}.x; pets reads SEAL 4.x")
    if compression > 2:
        raise SerializationError(f"{what} names an unknown compression mode {compression}")
    if size != len(blob):
        raise SerializationError(
            f"{what} declares {size} bytes but holds {len(blob)}; it is truncated or corrupted"
        )


def dump(obj: Any) -> bytes:
    """Serialise a SEAL object (ciphertext, keys) to bytes."""
    fd, path = tempfile.mkstemp(dir=_TMP)
    os.close(fd)
    try:
        obj.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def load(obj: T, context: Any, blob: bytes, what: str) -> T:
    """Load ``blob`` into the empty SEAL object ``obj`` under ``context``."""
    check_header(blob, what)
    fd, path = tempfile.mkstemp(dir=_TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        obj.load(context, path)  # type: ignore[attr-defined]
    except (RuntimeError, ValueError, TypeError) as exc:
        raise SerializationError(
            f"{what} does not fit these encryption parameters ({exc}); load it with the "
            "backend whose keys produced it"
        ) from exc
    finally:
        os.unlink(path)
    return obj
