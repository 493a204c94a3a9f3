"""The envelope every pets object is serialised in, and its validation.

Layout (all integers big-endian)::

    b"PETS" | format version (u16) | header length (u32) | header (UTF-8 JSON)
           | blob 0 | blob 1 | ... | SHA-256 of everything before it (32 bytes)

The header names the kind of object (``"backend"`` or ``"tensor"``), the backend,
the key fingerprint and the length of every blob. A loader checks magic, version,
lengths and digest *before* any engine sees a byte, so truncated, corrupted or
foreign bytes give a :class:`~pets.errors.SerializationError` that says which,
never an opaque engine crash.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from pets.errors import SerializationError

__all__ = ["Envelope", "pack", "unpack"]

MAGIC = b"PETS"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sHI")
_DIGEST = 32
_MAX_HEADER = 1 << 20


@dataclass
class Envelope:
    """What a pets byte string holds: kind, backend, key fingerprint, metadata, blobs."""

    kind: str
    backend: str
    key_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)


def pack(envelope: Envelope) -> bytes:
    """Serialise an envelope; the inverse of :func:`unpack`."""
    header = json.dumps(
        {
            "kind": envelope.kind,
            "backend": envelope.backend,
            "key_id": envelope.key_id,
            "meta": envelope.meta,
            "blobs": [len(blob) for blob in envelope.blobs],
        },
        sort_keys=True,
    ).encode()
    body = b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *envelope.blobs])
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, *, kind: str) -> Envelope:
    """Validate and split pets bytes, expecting an object of ``kind``.

    Raises :class:`SerializationError` naming what is wrong: not pets bytes at all,
    a newer format, truncated or corrupted data, or an object of another kind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"expected bytes from pets' to_bytes(), got {type(data).__name__}"
        )
    data = bytes(data)
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise SerializationError(
            "these bytes are not pets data (no PETS header); load only what pets' "
            "to_bytes() produced — raw TenSEAL or CrypTen bytes are not accepted"
        )
    _, version, header_length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise SerializationError(
            f"pets data format version {version} is not supported by this pets "
            f"(which reads version {FORMAT_VERSION}); load it with the pets version that wrote it"
        )
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise SerializationError(
            "pets data is truncated or corrupted (checksum mismatch); "
            "send or save the bytes again without altering them"
        )
    if header_length > _MAX_HEADER or _PREFIX.size + header_length > len(body):
        raise SerializationError("pets data has an impossible header length; it is corrupted")
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + header_length])
        lengths = [int(n) for n in header["blobs"]]
        envelope = Envelope(
            kind=str(header["kind"]),
            backend=str(header["backend"]),
            key_id=str(header["key_id"]),
            meta=dict(header["meta"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SerializationError(f"pets data has a malformed header: {exc}") from exc
    offset = _PREFIX.size + header_length
    if any(n < 0 for n in lengths) or offset + sum(lengths) != len(body):
        raise SerializationError("pets data blob lengths do not match its size; it is corrupted")
    for n in lengths:
        envelope.blobs.append(body[offset : offset + n])
        offset += n
    if envelope.kind != kind:
        raise SerializationError(
            f"these bytes hold a pets {envelope.kind}, not a {kind}; "
            f"use pets.load_{envelope.kind}() for them"
        )
    return envelope
