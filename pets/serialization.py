"""The envelope every pets object is serialised in, and its validation.

Layout (all integers big-endian)::

    magic (4) | format version (u16) | header length (u32) | header (UTF-8 JSON)
              | blob 0 | blob 1 | ... | trailer (32 bytes)

The header names the kind of object (``"backend"`` or ``"tensor"``), the backend,
the key fingerprint, free metadata and the length of every blob. Two trailers:

* magic ``PETS``: the SHA-256 of everything before it, a **checksum**. It catches
  truncation, bit flips and bytes that are not pets data. It is *not* a MAC:
  anyone can edit the bytes and recompute it, so it says nothing about who made them.
* magic ``PETA``: the HMAC-SHA256 of everything before it under a secret ``key``
  (``pack(..., key=...)``). Only a holder of the key can make bytes that load, so
  it also stops an active attacker who edits, forges or swaps bytes in transit or
  at rest. It does not stop replay of older bytes made with the same key; bind
  the bytes to a session (e.g. a fresh key per session) where that matters.

A loader checks magic, version, trailer, then the header's size, nesting, types
and every integer in it, *before* any engine sees a byte; anything wrong is a
:class:`~pets.errors.SerializationError` saying what, never an engine crash, a
``MemoryError`` or a hang. ``docs/security.md`` says what each trailer protects.

>>> from pets.serialization import Envelope, pack, unpack
>>> data = pack(Envelope("tensor", "plain", "k1", {"rows": 1}, [b"abc"]))
>>> unpack(data, kind="tensor").blobs
[b'abc']
>>> key = bytes(32)  # use secrets.token_bytes(32)
>>> unpack(pack(Envelope("tensor", "plain", "k1"), key=key), kind="tensor", key=key).key_id
'k1'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from pets.errors import SerializationError

__all__ = [
    "HEADER_PREFIX",
    "MAX_BLOBS",
    "MAX_HEADER",
    "MIN_KEY_BYTES",
    "Envelope",
    "is_authenticated",
    "pack",
    "unpack",
    "unpack_header",
]

MAGIC = b"PETS"
"""Bytes protected by a SHA-256 checksum (integrity against accidents only)."""
MAGIC_AUTHENTICATED = b"PETA"
"""Bytes protected by an HMAC-SHA256 under a secret key (integrity against attackers)."""
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sHI")
_DIGEST = 32

MAX_HEADER = 1 << 20
"""Largest header accepted (bytes of JSON)."""
MAX_BLOBS = 1 << 16
"""Most blobs one envelope may hold (a CKKS key set or a batched tensor holds hundreds)."""
MAX_LABEL = 256
"""Longest kind, backend name or key fingerprint."""
MIN_KEY_BYTES = 16
"""Shortest HMAC key accepted (128 bits)."""
_MAX_NESTING = 32
HEADER_PREFIX = _PREFIX.size
"""Bytes before the header (magic, version, header length)."""


@dataclass
class Envelope:
    """What a pets byte string holds: kind, backend, key fingerprint, metadata, blobs."""

    kind: str
    backend: str
    key_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)


def _check_key(key: Any) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"an authentication key must be bytes, got {type(key).__name__}. "
            "Fix: pass e.g. key=secrets.token_bytes(32), shared only with who must load the bytes."
        )
    key = bytes(key)
    if len(key) < MIN_KEY_BYTES:
        raise SerializationError(
            f"an authentication key of {len(key)} bytes is too short to resist guessing; "
            f"use at least {MIN_KEY_BYTES} random bytes. Fix: key=secrets.token_bytes(32)."
        )
    return key


def _trailer(body: bytes, key: bytes | None) -> bytes:
    if key is None:
        return hashlib.sha256(body).digest()
    return hmac.new(key, body, hashlib.sha256).digest()


def pack(envelope: Envelope, *, key: bytes | None = None) -> bytes:
    """Serialise an envelope; the inverse of :func:`unpack`.

    With ``key`` (at least :data:`MIN_KEY_BYTES` secret bytes), the bytes are
    authenticated with HMAC-SHA256, and only :func:`unpack` with the same key loads them.
    """
    secret = None if key is None else _check_key(key)
    if len(envelope.blobs) > MAX_BLOBS:
        raise SerializationError(
            f"an envelope holds at most {MAX_BLOBS} blobs, got {len(envelope.blobs)}. "
            "Fix: split the object (e.g. encrypt fewer features per tensor)."
        )
    try:
        header = json.dumps(
            {
                "kind": envelope.kind,
                "backend": envelope.backend,
                "key_id": envelope.key_id,
                "meta": envelope.meta,
                "blobs": [len(blob) for blob in envelope.blobs],
            },
            sort_keys=True,
            allow_nan=False,
        ).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"envelope metadata must be finite JSON values: {exc}. Fix: store numbers as "
            "finite floats or ints, and arrays in blobs."
        ) from exc
    if len(header) > MAX_HEADER:
        raise SerializationError(
            f"the envelope header is {len(header)} bytes, over the {MAX_HEADER} a loader accepts. "
            "Fix: put bulky data in blobs, not in metadata."
        )
    magic = MAGIC if secret is None else MAGIC_AUTHENTICATED
    body = b"".join([_PREFIX.pack(magic, FORMAT_VERSION, len(header)), header, *envelope.blobs])
    return body + _trailer(body, secret)


def is_authenticated(data: bytes) -> bool:
    """Whether ``data`` claims an HMAC trailer (its magic is ``PETA``); nothing is verified.

    >>> from pets.serialization import Envelope, is_authenticated, pack
    >>> is_authenticated(pack(Envelope("tensor", "plain", "k1")))
    False
    """
    return bytes(data[:4]) == MAGIC_AUTHENTICATED


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a pets header")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} overflows a float")
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _label(header: dict[str, Any], name: str, *, shortest: int = 1) -> str:
    value = header[name]
    if not isinstance(value, str) or not shortest <= len(value) <= MAX_LABEL:
        raise ValueError(f"{name} must be a string of {shortest} to {MAX_LABEL} characters")
    return value


def _parse_header(raw: bytes, body_length: int) -> tuple[Envelope, list[int]]:
    try:
        header = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        if not isinstance(header, dict) or set(header) != {
            "kind", "backend", "key_id", "meta", "blobs"
        }:
            raise ValueError("the header must be an object with kind, backend, key_id, meta, blobs")
        if _depth(header, _MAX_NESTING) > _MAX_NESTING:
            raise ValueError(f"the header nests deeper than {_MAX_NESTING} levels")
        lengths = header["blobs"]
        if not isinstance(lengths, list) or len(lengths) > MAX_BLOBS:
            raise ValueError(f"blobs must be a list of at most {MAX_BLOBS} lengths")
        if not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= body_length
            for n in lengths
        ):
            raise ValueError(f"every blob length must be an integer in [0, {body_length}]")
        if not isinstance(header["meta"], dict):
            raise ValueError("meta must be an object")
        envelope = Envelope(
            kind=_label(header, "kind"),
            backend=_label(header, "backend"),
            key_id=_label(header, "key_id", shortest=0),
            meta=header["meta"],
        )
    except (ValueError, TypeError, RecursionError) as exc:
        raise SerializationError(f"pets data has a malformed header: {exc}") from exc
    return envelope, lengths


def _read_prefix(data: bytes, size: int) -> tuple[bytes, int]:
    """Magic and header length of pets data of ``size`` bytes starting with ``data``."""
    magic = bytes(data[:4])
    if (size < _PREFIX.size + _DIGEST or len(data) < _PREFIX.size
            or magic not in (MAGIC, MAGIC_AUTHENTICATED)):
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
    return magic, header_length


def unpack_header(head: bytes, size: int, *, kind: str) -> Envelope:
    """Kind, backend, key fingerprint and metadata of pets data of ``size`` bytes, read from
    its first bytes ``head`` (``HEADER_PREFIX + MAX_HEADER`` are always enough).

    Checked as :func:`unpack` checks them, except the trailer, which needs every byte:
    a receiver checks a large body's header before keeping the rest, then unpacks it
    whole. The envelope has no blobs.

    >>> from pets.serialization import Envelope, pack, unpack_header
    >>> data = pack(Envelope("tensor", "plain", "k1", {"rows": 1}, [b"abc"]))
    >>> unpack_header(data[:200], len(data), kind="tensor").meta
    {'rows': 1}
    """
    _, header_length = _read_prefix(head, size)
    offset = _PREFIX.size + header_length
    if header_length > MAX_HEADER or offset > size - _DIGEST:
        raise SerializationError("pets data has an impossible header length; it is corrupted")
    if len(head) < offset:
        raise SerializationError(
            f"pets data's header needs {offset} bytes, only {len(head)} were given")
    envelope, lengths = _parse_header(bytes(head[_PREFIX.size : offset]), 1 << 62)
    if offset + sum(lengths) != size - _DIGEST:
        raise SerializationError(
            f"pets data is truncated or corrupted: its header announces "
            f"{offset + sum(lengths) + _DIGEST} bytes, {size} came; send or save the bytes "
            "again without altering them"
        )
    if envelope.kind != kind:
        raise SerializationError(
            f"these bytes hold a pets {envelope.kind}, not a {kind}; "
            f"use pets.load_{envelope.kind}() for them"
        )
    return envelope


def unpack(data: bytes, *, kind: str, key: bytes | None = None) -> Envelope:
    """Validate and split pets bytes, expecting an object of ``kind``.

    With ``key``, only bytes packed with that key (HMAC-SHA256) are accepted;
    without it, only checksummed bytes. Raises :class:`SerializationError` naming
    what is wrong: not pets bytes at all, a newer format, truncated, corrupted or
    forged data, a missing or wrong key, or an object of another kind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"expected bytes from pets' to_bytes(), got {type(data).__name__}"
        )
    secret = None if key is None else _check_key(key)
    data = bytes(data)
    magic, header_length = _read_prefix(data, len(data))
    if magic == MAGIC_AUTHENTICATED and secret is None:
        raise SerializationError(
            "these pets bytes are authenticated (HMAC-SHA256 under a secret key); "
            "pass the same key= to load them"
        )
    if magic == MAGIC and secret is not None:
        raise SerializationError(
            "these pets bytes carry only a checksum, not the authentication a key= asks for: "
            "anyone could have made them. Fix: have the sender serialise them with the same "
            "key, or load them without key= where integrity against an attacker does not matter"
        )
    body, trailer = data[:-_DIGEST], data[-_DIGEST:]
    if not hmac.compare_digest(_trailer(body, secret), trailer):
        if secret is not None:
            raise SerializationError(
                "pets data failed authentication (HMAC-SHA256 mismatch): it was altered, "
                "truncated or made with another key; refuse it and ask the sender again"
            )
        raise SerializationError(
            "pets data is truncated or corrupted (checksum mismatch); "
            "send or save the bytes again without altering them"
        )
    if header_length > MAX_HEADER or _PREFIX.size + header_length > len(body):
        raise SerializationError("pets data has an impossible header length; it is corrupted")
    offset = _PREFIX.size + header_length
    envelope, lengths = _parse_header(body[_PREFIX.size : offset], len(body))
    if offset + sum(lengths) != len(body):
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
