"""SEAL objects to and from bytes, validated before SEAL parses them.

TenSEAL's SEAL bindings save and load through file paths only, and SEAL's
loaders trust the sizes written inside the data. Here every blob's SEAL header
(magic, version, compression, declared size) is checked first, and SEAL's
opaque errors come back as :class:`~pets.errors.SerializationError`.

The path is an anonymous in-memory file (``memfd_create``: no size limit but
memory, nothing on disk, gone when closed), or, where that does not exist, a
file in the temporary directory. ``/dev/shm`` is not used: containers often
cap it at 64 MiB, less than one key set.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pets.errors import SerializationError

__all__ = ["check_header", "dump", "load"]

_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
_MAGIC = 0xA15E
_HAS_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")

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


@contextmanager
def _scratch_file() -> Iterator[tuple[int, str]]:
    """An open file descriptor and a path SEAL can open, removed afterwards."""
    if _HAS_MEMFD:
        fd = os.memfd_create("pets-seal", 0)
        try:
            yield fd, f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="pets-seal-")
    try:
        yield fd, path
    finally:
        os.close(fd)
        os.unlink(path)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 22):
        chunks.append(chunk)
    return b"".join(chunks)


def _scratch_error(exc: OSError, what: str) -> SerializationError:
    return SerializationError(
        f"could not stage {what} in a temporary file ({exc}); free memory or space in "
        f"{tempfile.gettempdir()} (or point TMPDIR at a larger directory) and retry"
    )


def dump(obj: Any, what: str = "a SEAL object") -> bytes:
    """Serialise a SEAL object (ciphertext, keys, or a seeded ``Serializable``) to bytes."""
    try:
        with _scratch_file() as (fd, path):
            obj.save(path)
            return _read_all(fd)
    except OSError as exc:
        raise _scratch_error(exc, what) from exc


def load(obj: T, context: Any, blob: bytes, what: str) -> T:
    """Load ``blob`` into the empty SEAL object ``obj`` under ``context``."""
    check_header(blob, what)
    try:
        with _scratch_file() as (fd, path):
            view = memoryview(blob)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            try:
                obj.load(context, path)  # type: ignore[attr-defined]
            except (RuntimeError, ValueError, TypeError) as exc:
                raise SerializationError(
                    f"{what} does not fit these encryption parameters ({exc}); load it with the "
                    "backend whose keys produced it"
                ) from exc
    except OSError as exc:
        raise _scratch_error(exc, what) from exc
    return obj
