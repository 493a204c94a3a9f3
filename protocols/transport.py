"""Length-prefixed frames over TCP, with limits, timeouts and byte counting.

A frame is ``b"PETW" | kind (u8) | length (u64, big-endian) | payload``. The
receiver refuses frames above ``max_bytes`` before reading them, so a peer
cannot make it allocate without bound, and every socket has a timeout, so a
dead peer gives :class:`pets.PartyError` instead of a hang. Bytes and rounds
are counted in any active :func:`pets.measure`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pets.errors import PartyError, SerializationError
from pets.measure import record_bytes, record_round

__all__ = ["Connection", "Frame", "connect"]

_HEADER = struct.Struct(">4sBQ")
_MAGIC = b"PETW"
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes


class Connection:
    """One framed, timed-out TCP connection to a peer."""

    def __init__(self, sock: socket.socket, *, peer: str, timeout: float = DEFAULT_TIMEOUT,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.sock = sock
        self.peer = peer
        self.max_bytes = max_bytes
        sock.settimeout(timeout)

    def send(self, kind: int, payload: bytes = b"") -> None:
        try:
            self.sock.sendall(_HEADER.pack(_MAGIC, kind, len(payload)) + payload)
        except OSError as exc:
            raise PartyError(f"could not send to {self.peer}: {exc}; is it still running?") from exc
        record_bytes(_HEADER.size + len(payload))

    def _read(self, count: int) -> bytes:
        chunks, remaining = [], count
        while remaining:
            try:
                chunk = self.sock.recv(min(remaining, 1 << 20))
            except TimeoutError as exc:
                raise PartyError(
                    f"{self.peer} sent nothing for {self.sock.gettimeout():.0f} s; it may have "
                    "died or be overloaded (raise the timeout for very large models)"
                ) from exc
            except OSError as exc:
                raise PartyError(f"connection to {self.peer} failed: {exc}") from exc
            if not chunk:
                raise PartyError(f"{self.peer} closed the connection mid-message")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> Frame:
        magic, kind, length = _HEADER.unpack(self._read(_HEADER.size))
        if magic != _MAGIC:
            raise SerializationError(f"{self.peer} does not speak the pets wire protocol")
        if length > self.max_bytes:
            raise SerializationError(
                f"{self.peer} announced a {length}-byte message, above the {self.max_bytes}-byte "
                "limit; raise max_bytes if that is expected"
            )
        payload = self._read(length)
        record_round()
        return Frame(kind, payload)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> Connection:
    """Open a framed connection, or raise :class:`PartyError` saying why not."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise PartyError(
            f"cannot reach {host}:{port} ({exc}); start the server first (pets serve)"
        ) from exc
    return Connection(sock, peer=f"{host}:{port}", timeout=timeout)
