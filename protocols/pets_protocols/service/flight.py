"""Request body bytes being received, capped per client and in total.

Bodies are spooled to disk as they arrive (:mod:`.payloads`), so memory does not
grow with them; this cap bounds what the arriving bodies may hold of the disk and
how much one client may have in flight at once. A body reserves its announced
``Content-Length`` before a byte is read (a chunked body reserves as it grows)
and gives it back the moment its request ends, refused or not.

>>> from pets_protocols.service.flight import BytesInFlight
>>> flight = BytesInFlight(total=100, per_client=60)
>>> with flight.hold("10.0.0.1") as held:
...     held.grow(50)
...     held.grow(20)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pets_protocols.service.errors.Refusal: this client already has 50 bytes of request bodies ...
>>> flight.in_flight
0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pets.errors import RequestRefusedError, ServiceUnavailableError
from pets_protocols.service.errors import Refusal

__all__ = ["BytesInFlight", "Held"]


class Held:
    """The bytes one request holds; :meth:`grow` reserves more."""

    def __init__(self, flight: BytesInFlight, client: str) -> None:
        self.flight = flight
        self.client = client
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes, or refuse (429 for this client, 503 for the server)."""
        flight = self.flight
        if flight.by_client[self.client] + size > flight.per_client:
            raise Refusal(429, RequestRefusedError(
                f"this client already has {flight.by_client[self.client]} bytes of request "
                f"bodies arriving, and one client may have {flight.per_client} at once; send "
                "the next body when one has been answered"
            ))
        if flight.in_flight + size > flight.total:
            raise Refusal(503, ServiceUnavailableError(
                f"the server is receiving {flight.in_flight} bytes of request bodies, its "
                f"maximum is {flight.total}; retry shortly"
            ))
        flight.by_client[self.client] += size
        flight.in_flight += size
        self.size += size


class BytesInFlight:
    """Body bytes being received, by client; used from the event loop only (no lock)."""

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.in_flight = 0
        self.by_client: Counter[str] = Counter()

    @contextmanager
    def hold(self, client: str) -> Iterator[Held]:
        """What one request body holds, given back when the block ends."""
        held = Held(self, client)
        try:
            yield held
        finally:
            self.in_flight -= held.size
            self.by_client[client] -= held.size
            if self.by_client[client] <= 0:
                del self.by_client[client]
