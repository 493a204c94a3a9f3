"""Deadlines on each connection, so slow or idle clients cannot hold the server.

uvicorn closes idle keep-alive connections but puts no deadline on a request
that is arriving: a client that connects and sends nothing, or one byte every
50 s, would hold its connection (and its slot under ``limit_concurrency``)
forever. This protocol adds two deadlines counted from a request's first byte
(from the connection's start for the first request): its request line and
headers must arrive within ``head_timeout``, the whole request within
``head_timeout + body_timeout``. Past either the connection is closed (with a
408 if nothing was answered yet). The routes' own body deadline answers first
in the usual case, with a JSON 408. A request line and headers over
:data:`MAX_HEAD_BYTES` are refused (400) as they arrive, since httptools has no
such cap of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["MAX_HEAD_BYTES", "deadline_protocol"]

#: largest request line plus headers (this API needs well under 1 KiB)
MAX_HEAD_BYTES = 64 * 1024

log = logging.getLogger("pets_protocols.service")

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def deadline_protocol(head_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with request deadlines (``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class DeadlineProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _request_timer: asyncio.TimerHandle | None = None
        _in_head = False
        _head_bytes = 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:  # uvicorn answers 400 and closes
                raise ValueError(f"request head over {MAX_HEAD_BYTES} bytes")

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            if self._request_timer is None:
                self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._in_head = True
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(head_timeout, self._expire, "headers",
                                                    head_timeout)
            self._request_timer = self.loop.call_later(
                head_timeout + body_timeout, self._expire, "request", head_timeout + body_timeout)

        def _disarm(self) -> None:
            for timer in (self._head_timer, self._request_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._request_timer = None

        def _expire(self, what: str, seconds: float) -> None:
            self._disarm()
            if self.transport is None or self.transport.is_closing():
                return
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
            log.warning("%s: no complete %s within %g s; connection closed", peer, what, seconds)
            if self._in_head:  # nothing answered on this request yet
                body = (b'{"error": "PartyError", "message": "the request %s did not arrive '
                        b'within %g s; send it at once"}' % (what.encode(), seconds))
                self.transport.write(_TIMEOUT_ANSWER % (len(body), body))
            self.transport.close()

    return DeadlineProtocol
