"""The limits and timeouts of one inference service; every one is a ``pets serve`` option.

Limits hold in total and per client (a client is an IP address), so that one
client cannot take every connection, session or byte of buffer.

>>> from pets_protocols.service.config import ServiceConfig
>>> ServiceConfig(max_sessions=4).max_sessions
4
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["MiB", "ServiceConfig"]

MiB = 1 << 20


@dataclass(frozen=True)
class ServiceConfig:
    """What the service accepts, for how long, and how much work it runs at once."""

    #: sessions held at once (each holds one client's public key set)
    max_sessions: int = 16
    #: largest public key set a session may upload: it is what a session keeps in memory
    #: (on disk in the server, loaded in each worker that serves the session)
    max_key_bytes: int = 256 * MiB
    #: largest ciphertext request
    max_request_bytes: int = 256 * MiB
    #: most samples in one request (its header is checked before any ciphertext is read)
    max_rows: int = 4096
    #: a session unused this long (seconds) is closed and its keys deleted
    idle_timeout: float = 600.0
    #: a request body must arrive within this many seconds of its headers
    body_timeout: float = 120.0
    #: a request line and headers must arrive within this many seconds
    head_timeout: float = 30.0
    #: an idle keep-alive connection is closed after this many seconds
    keep_alive: float = 5.0
    #: open connections at once; more get 503
    max_connections: int = 64
    #: open connections of one client (one IP address); more get 503 at once
    max_connections_per_client: int = 8
    #: sessions one client (one IP address) may hold
    max_sessions_per_client: int = 4
    #: request body bytes being received at once, by all clients (spooled to disk)
    max_bytes_in_flight: int = 1024 * MiB
    #: request body bytes one client may have arriving at once
    max_bytes_in_flight_per_client: int = 512 * MiB
    #: evaluation processes (CKKS holds the GIL, so parallel work needs processes)
    workers: int = 2
    #: sessions whose loaded keys each worker keeps, least recently used dropped first
    worker_cache: int = 4

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise ValueError(f"ServiceConfig.{item.name} must be > 0, got {value!r}")
        for part, whole in (("max_connections_per_client", "max_connections"),
                            ("max_sessions_per_client", "max_sessions"),
                            ("max_bytes_in_flight_per_client", "max_bytes_in_flight")):
            if getattr(self, part) > getattr(self, whole):
                raise ValueError(f"ServiceConfig.{part} ({getattr(self, part)}) must not "
                                 f"exceed {whole} ({getattr(self, whole)})")
        largest = max(self.max_request_bytes, self.max_key_bytes)
        if self.max_bytes_in_flight_per_client < largest:
            raise ValueError(
                "ServiceConfig.max_bytes_in_flight_per_client "
                f"({self.max_bytes_in_flight_per_client}) must hold the largest request or key "
                f"set ({largest} bytes)")
