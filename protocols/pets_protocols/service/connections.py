"""Each connection admitted per client and given deadlines, so slow clients cannot hold the server.

uvicorn closes idle keep-alive connections but puts no deadline on a request that
is arriving, and counts every open connection against one shared limit: one
client that opens 100 connections and sends half a request head on each would
take every slot (everyone else gets 503) for as long as it likes.

:class:`GuardedProtocol` sits in front of uvicorn's httptools protocol (it wraps
it; it does not subclass it) and

* admits a connection only while its client (its IP address) holds fewer than
  ``max_per_client`` and the server fewer than ``max_connections``; a refused one
  gets a 503 naming the limit and is closed at once;
* follows request boundaries with its own ``httptools`` parser and gives each
  request two deadlines, counted from its first byte (from the connection's start
  for the first request): the request line and headers within ``head_timeout``,
  the whole request within ``head_timeout + body_timeout``. Past either the
  connection is closed, with a 408 if nothing was answered yet (the routes' own
  body deadline answers first in the usual case);
* refuses a request line and headers over :data:`MAX_HEAD_BYTES` (400) as they arrive.

``httptools`` is required (it comes with ``uvicorn[standard]``, the ``service``
extra): without it :func:`guarded_protocol` raises rather than serving with no
deadline on slow request heads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pets.errors import ServiceError

__all__ = ["MAX_HEAD_BYTES", "ConnectionLimits", "GuardedProtocol", "guarded_protocol"]

#: largest request line plus headers (this API needs well under 1 KiB)
MAX_HEAD_BYTES = 64 * 1024

log = logging.getLogger("pets_protocols.service")


@dataclass
class ConnectionLimits:
    """The connection limits and request deadlines of one server, and who holds what."""

    head_timeout: float
    body_timeout: float
    max_connections: int
    max_per_client: int
    #: open connections by client address
    open: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str) -> str | None:
        """Count a new connection from ``client``; the reason it is refused, if it is."""
        if self.open[client] >= self.max_per_client:
            return (f"this client already holds {self.max_per_client} connections, the most "
                    "one client may; reuse one (keep-alive) or close one")
        if self.open.total() >= self.max_connections:
            return (f"the server holds its maximum of {self.max_connections} connections; "
                    "retry later")
        self.open[client] += 1
        return None

    def leave(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


def _answer(status: str, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class GuardedProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol behind per-client admission and request deadlines.

    Made by :func:`guarded_protocol`, which binds :attr:`limits` and :attr:`inner`;
    uvicorn constructs it with the keywords it gives any HTTP protocol class.
    """

    limits: ConnectionLimits
    inner: type[asyncio.Protocol]

    def __init__(self, **uvicorn_arguments: Any) -> None:
        import httptools

        self._http = self.inner(**uvicorn_arguments)
        self._parser: Any = httptools.HttpRequestParser(self)
        self._parse_error: type[Exception] = httptools.HttpParserError
        self._tracking = True  # until a parse error or an upgrade: uvicorn handles those
        self._transport: Any = None
        self._client: str | None = None  # set once admitted
        self._head_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0
        self._head_too_large = False
        self._closed = False

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self._transport = transport
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        refusal = self.limits.admit(client)
        if refusal is not None:
            log.warning("%s: connection refused: %s", client, refusal)
            self._closed = True
            transport.write(_answer("503 Service Unavailable", "ServiceUnavailableError",
                                    refusal))
            transport.close()
            return
        self._client = client
        self._http.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._tracking:
            try:
                self._parser.feed_data(data)
            except self._parse_error:  # uvicorn's parser finds it too and answers 400
                self._tracking = False
            if self._head_too_large:  # (the callback's error stopped our parser)
                self._refuse_head(f"the request line and headers are over {MAX_HEAD_BYTES} "
                                  "bytes; this API needs well under 1 KiB")
                return
        self._http.data_received(data)

    def eof_received(self) -> bool | None:
        if self._client is None:
            return None
        return self._http.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._closed = True
        if self._client is not None:
            self.limits.leave(self._client)
            self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._client is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._client is not None:
            self._http.resume_writing()

    # ---- httptools callbacks: where each request begins and ends ---------------------------

    def on_message_begin(self) -> None:
        if self._request_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._parser.should_upgrade():
            self._tracking = False

    def on_message_complete(self) -> None:
        self._disarm()

    # ---- deadlines --------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise ValueError("request head too large")  # stops our parser

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        head, body = self.limits.head_timeout, self.limits.body_timeout
        self._in_head = True
        self._head_bytes = 0
        self._head_timer = loop.call_later(head, self._expire, "headers", head)
        self._request_timer = loop.call_later(head + body, self._expire, "request", head + body)

    def _disarm(self) -> None:
        for timer in (self._head_timer, self._request_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._request_timer = None

    def _refuse_head(self, message: str) -> None:
        log.warning("%s: %s; connection closed", self._client, message)
        self._close_with(_answer("400 Bad Request", "RequestRefusedError", message))

    def _expire(self, what: str, seconds: float) -> None:
        self._disarm()
        log.warning("%s: no complete %s within %g s; connection closed", self._client, what,
                    seconds)
        message = f"the request {what} did not arrive within {seconds:g} s; send it at once"
        # once the headers are in, the route may have answered: then only close
        self._close_with(_answer("408 Request Timeout", "RequestRefusedError", message)
                         if self._in_head else b"")

    def _close_with(self, answer: bytes) -> None:
        transport = self._transport
        self._closed = True
        self._disarm()
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for ``limits``.

    It wraps uvicorn's ``httptools`` protocol (what ``--http httptools`` names).
    """
    try:
        import httptools  # noqa: F401
        from uvicorn.config import HTTP_PROTOCOLS
        from uvicorn.importer import import_from_string
    except ImportError as exc:
        raise ServiceError(
            f"the inference service needs httptools for its request deadlines ({exc}); "
            "install the service extra: pip install 'pets[service]' (uvicorn[standard])"
        ) from exc
    inner: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS["httptools"])
    return type("GuardedHttpProtocol", (GuardedProtocol,), {"limits": limits, "inner": inner})
