"""Request bodies: read within a size cap and a deadline, then checked by their header.

A body is refused by its ``Content-Length`` before it is read, and again while it
streams in, so a client cannot make the server buffer more than the limit; it must
arrive within a deadline, so a client sending a byte now and then cannot hold a
request open. Key sets and tensors are then checked by their pets envelope
(checksum, kind, backend, key fingerprint) and a tensor's announced shape against
the model and the limits, before any engine parses a ciphertext or allocates for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from starlette.requests import ClientDisconnect, Request

from pets.errors import KeyMismatchError, PartyError, SerializationError, ShapeMismatchError
from pets.serialization import unpack
from pets_protocols.service.errors import Refusal

__all__ = ["KeyHeader", "inspect_keys", "inspect_tensor", "read_body"]


async def read_body(request: Request, *, limit: int, deadline: float, what: str) -> bytes:
    """The body, at most ``limit`` bytes, received within ``deadline`` seconds."""
    announced = request.headers.get("content-length")
    if announced is not None:
        if not announced.isdigit():
            raise Refusal(400, SerializationError(
                f"Content-Length {announced[:32]!r} is not a size"))
        if int(announced) > limit:
            raise Refusal(413, SerializationError(
                f"the {what} is {int(announced)} bytes, above this server's limit of {limit}; "
                "send less per request (the limits are in GET /model)"
            ))
    body = bytearray()
    try:
        with anyio.fail_after(deadline):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise Refusal(413, SerializationError(
                        f"the {what} is over this server's limit of {limit} bytes; "
                        "send less per request (the limits are in GET /model)"
                    ))
    except TimeoutError as exc:
        raise Refusal(408, PartyError(
            f"the {what} did not arrive within {deadline:g} s ({len(body)} bytes came); "
            "send the whole body at once, over a faster link, or ask for a longer "
            "pets serve --body-timeout"
        )) from exc
    except ClientDisconnect as exc:
        raise Refusal(400, PartyError(f"the client disconnected while sending the {what}")) from exc
    if not body:
        raise Refusal(400, SerializationError(
            f"the request carries no {what}; send the bytes of pets' to_bytes() as the body"
        ))
    return bytes(body)


@dataclass(frozen=True)
class KeyHeader:
    """What a key set's envelope says about itself."""

    backend: str
    key_id: str


def inspect_keys(data: bytes, *, backend: str) -> KeyHeader:
    """Check a key set's envelope: pets bytes, intact, a ``backend`` key set, no secret key."""
    envelope = unpack(data, kind="backend")
    if envelope.backend != backend:
        raise KeyMismatchError(
            f"this server evaluates with {backend} keys, got a {envelope.backend} key set; "
            f"make the keys with pets.backend({backend!r}) and send .public().to_bytes()"
        )
    if envelope.meta.get("secret"):
        raise KeyMismatchError(secret_key_message())
    return KeyHeader(envelope.backend, envelope.key_id)


def secret_key_message() -> str:
    return ("the key set holds the secret key and was refused (nothing was stored); "
            "send backend.public().to_bytes(): the server must never hold the secret key")


def inspect_tensor(data: bytes, *, backend: str, key_id: str, input_size: int,
                   max_rows: int) -> int:
    """Check a tensor's envelope and announced shape; the number of samples it holds."""
    envelope = unpack(data, kind="tensor")
    if envelope.backend != backend or envelope.key_id != key_id:
        raise KeyMismatchError(
            f"this is a {envelope.backend} tensor under key {envelope.key_id}, but the session "
            f"holds {backend} key {key_id}; encrypt with the keys this session was opened with"
        )
    meta = envelope.meta
    shape = meta.get("shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)):
        raise SerializationError(
            f"the tensor header has no valid shape ({str(shape)[:60]}); send the bytes of "
            "PrivateTensor.to_bytes() unaltered"
        )
    rows = shape[0] if len(shape) == 2 else 1
    if shape[-1] != input_size:
        raise ShapeMismatchError(
            f"this model takes {input_size} features per sample, the tensor has shape "
            f"{tuple(shape)}; encrypt (samples, {input_size}) arrays"
        )
    if not 1 <= rows <= max_rows:
        raise ShapeMismatchError(
            f"this server takes 1 to {max_rows} samples per request, the tensor announces "
            f"{rows}; send smaller batches (pets serve --max-rows sets the limit)"
        )
    for name, expected in (("rows", rows), ("cols", input_size)):
        if name in meta and meta[name] != expected:
            raise SerializationError(
                f"the tensor header says {name}={str(meta[name])[:20]} but shape {tuple(shape)}; "
                "it is forged or corrupted"
            )
    return rows
