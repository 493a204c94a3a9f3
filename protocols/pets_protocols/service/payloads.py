"""Request bodies: spooled to disk within a size cap and a deadline, then checked by header.

A body is refused by its ``Content-Length`` before it is read, and again while it
streams in, so a client cannot make the server keep more than the limit; it must
arrive within a deadline, so a client sending a byte now and then cannot hold a
request open. It is written to a file of the service's private folder as it
arrives (the server's memory does not grow with it), counted against the bytes
in flight of its client and of the server, and deleted the moment its request
ends, answered or refused. Workers read it from there.

Key sets and tensors are then checked by their pets header (kind, backend, key
fingerprint; a tensor's numbers, each range-checked by :class:`TensorHeader`, and
its shape against the model and the limits) before any engine parses a
ciphertext or allocates for it. The worker checks the trailer and the rest.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from pets.errors import (
    KeyMismatchError,
    RequestRefusedError,
    SerializationError,
    ShapeMismatchError,
)
from pets.serialization import HEADER_PREFIX, MAX_HEADER, unpack_header
from pets_protocols.service.errors import Refusal
from pets_protocols.service.flight import BytesInFlight, Held
from pets_protocols.service.schemas import TensorHeader

__all__ = ["Body", "KeyHeader", "client_of", "inspect_keys", "inspect_tensor", "spooled_body"]


@dataclass(frozen=True)
class Body:
    """A request body on disk: its file and its size."""

    path: Path
    size: int

    def head(self) -> bytes:
        """The first bytes, enough for any pets header."""
        with self.path.open("rb") as file:
            return file.read(HEADER_PREFIX + MAX_HEADER)


def client_of(request: Request) -> str:
    """The client a request counts against: its IP address."""
    return request.client.host if request.client is not None else "unknown"


@asynccontextmanager
async def spooled_body(request: Request, *, folder: Path, flight: BytesInFlight, limit: int,
                       deadline: float, what: str) -> AsyncIterator[Body]:
    """The body on disk, at most ``limit`` bytes, received within ``deadline`` seconds;
    its file is deleted and its bytes in flight given back when the block ends."""
    announced = _announced(request, limit, what)
    with flight.hold(client_of(request)) as held:
        held.grow(announced)
        descriptor, name = tempfile.mkstemp(dir=folder, suffix=".body")
        path = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                size = await _receive(request, file, held, limit=limit, deadline=deadline,
                                      what=what)
            yield Body(path, size)
        finally:
            path.unlink(missing_ok=True)


def _announced(request: Request, limit: int, what: str) -> int:
    announced = request.headers.get("content-length")
    if announced is None:
        return 0
    if not (announced.isascii() and announced.isdigit() and len(announced) <= 20):
        raise Refusal(400, SerializationError(f"Content-Length {announced[:32]!r} is not a size"))
    if int(announced) > limit:
        raise Refusal(413, SerializationError(
            f"the {what} is {int(announced)} bytes, above this server's limit of {limit}; "
            "send less per request (the limits are in GET /model)"
        ))
    return int(announced)


async def _receive(request: Request, file: IO[bytes], held: Held, *, limit: int,
                   deadline: float, what: str) -> int:
    size = 0
    try:
        with anyio.fail_after(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, SerializationError(
                        f"the {what} is over this server's limit of {limit} bytes; "
                        "send less per request (the limits are in GET /model)"
                    ))
                if size > held.size:  # a chunked body: hold its bytes as they come
                    held.grow(size - held.size)
                file.write(chunk)
    except TimeoutError as exc:
        raise Refusal(408, RequestRefusedError(
            f"the {what} did not arrive within {deadline:g} s ({size} bytes came); "
            "send the whole body at once, over a faster link, or ask for a longer "
            "pets serve --body-timeout"
        )) from exc
    except ClientDisconnect as exc:
        raise Refusal(400, RequestRefusedError(
            f"the client disconnected while sending the {what}")) from exc
    if not size:
        raise Refusal(400, SerializationError(
            f"the request carries no {what}; send the bytes of pets' to_bytes() as the body"
        ))
    return size


@dataclass(frozen=True)
class KeyHeader:
    """What a key set's envelope says about itself."""

    backend: str
    key_id: str


def inspect_keys(body: Body, *, backend: str) -> KeyHeader:
    """Check a key set's header: pets bytes, a ``backend`` key set, no secret key."""
    envelope = unpack_header(body.head(), body.size, kind="backend")
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


def inspect_tensor(body: Body, *, backend: str, key_id: str, input_size: int,
                   max_rows: int) -> int:
    """Check a tensor's header, its numbers and its shape; the number of samples it holds."""
    envelope = unpack_header(body.head(), body.size, kind="tensor")
    if envelope.backend != backend or envelope.key_id != key_id:
        raise KeyMismatchError(
            f"this is a {envelope.backend} tensor under key {envelope.key_id}, but the session "
            f"holds {backend} key {key_id}; encrypt with the keys this session was opened with"
        )
    try:
        header = TensorHeader.model_validate(envelope.meta)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'header'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise SerializationError(
            f"the tensor header is forged or corrupted ({problems[:300]}); send the bytes of "
            "PrivateTensor.to_bytes() unaltered"
        ) from None
    shape = header.shape
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
    for name, announced, expected in (("rows", header.rows, rows),
                                      ("cols", header.cols, input_size)):
        if announced is not None and announced != expected:
            raise SerializationError(
                f"the tensor header says {name}={str(announced)[:20]} but shape "
                f"{tuple(shape)}; it is forged or corrupted"
            )
    return rows
