"""Sessions: one per client, each holding that client's public key set, never mixed.

A session is created by uploading a public key set and named by a random id; its
keys are kept in a file of a private folder (workers load them from there) and
deleted when the session is closed or has been idle too long. Sessions are capped
in total and per client (an IP address); a slot is reserved only once the key set
has arrived and its header was checked, so a slow upload holds no slot. The store
is used from the event loop only, so it needs no lock.

>>> import pathlib, tempfile
>>> from pets_protocols.service.sessions import SessionStore
>>> store = SessionStore(pathlib.Path(tempfile.mkdtemp()), max_sessions=2, idle_timeout=60,
...                      max_per_client=1)
>>> sid = store.reserve("10.0.0.1")
>>> store.reserve("10.0.0.1")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pets_protocols.service.errors.Refusal: this client holds 1 sessions, the most one client may; ...
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from pets.errors import MissingKeyError, RequestRefusedError, ServiceUnavailableError
from pets_protocols.service.errors import Refusal

__all__ = ["Session", "SessionStore"]

log = logging.getLogger("pets_protocols.service")


@dataclass
class Session:
    """One client's session: its key fingerprint and where its public keys are."""

    id: str
    key_id: str
    key_path: Path
    key_bytes: int
    last_used: float
    client: str = "unknown"
    busy: bool = False
    inferences: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    created: float = field(default_factory=time.time)


class SessionStore:
    """The sessions of one server, with a cap on their number and an idle expiry."""

    def __init__(self, folder: Path, *, max_sessions: int, idle_timeout: float,
                 max_per_client: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.max_sessions = max_sessions
        self.max_per_client = max_sessions if max_per_client is None else max_per_client
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._reserved: dict[str, str] = {}  # session id -> client

    def __len__(self) -> int:
        return len(self._sessions)

    def check_room(self, client: str) -> None:
        """Refuse at once when ``client`` could not get a session now (nothing is reserved)."""
        self.expire_idle()
        held = (sum(s.client == client for s in self._sessions.values())
                + sum(c == client for c in self._reserved.values()))
        if len(self._sessions) + len(self._reserved) >= self.max_sessions:
            raise Refusal(503, ServiceUnavailableError(
                f"the server holds its maximum of {self.max_sessions} sessions; close one "
                "(DELETE /sessions/ID) or retry later"
            ))
        if held >= self.max_per_client:
            raise Refusal(429, RequestRefusedError(
                f"this client holds {held} sessions, the most one client may; close one "
                "(DELETE /sessions/ID) or use the one it has"
            ))

    def reserve(self, client: str) -> str:
        """A new session id for ``client``, counted against the caps until added or released."""
        self.check_room(client)
        session_id = secrets.token_urlsafe(18)
        self._reserved[session_id] = client
        return session_id

    def release(self, session_id: str) -> None:
        """Give back a reservation whose session was not created."""
        self._reserved.pop(session_id, None)

    def key_path(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.keys"

    def add(self, session: Session) -> None:
        """Store a reserved session (its key file already written)."""
        self._reserved.pop(session.id, None)
        self._sessions[session.id] = session

    def get(self, session_id: str) -> Session:
        """The live session ``session_id``, or a 404 saying how to get a new one."""
        self.expire_idle()
        session = self._sessions.get(session_id)
        if session is None:
            raise Refusal(404, MissingKeyError(
                f"no session {session_id[:64]!r} here: it was closed, expired after "
                f"{self.idle_timeout:g} s idle, or never existed; open a new one "
                "(POST /sessions with your public key set)"
            ))
        return session

    @contextmanager
    def using(self, session: Session) -> Iterator[Session]:
        """Mark ``session`` busy for one request (one at a time per session)."""
        if session.busy:
            raise Refusal(429, RequestRefusedError(
                f"session {session.id} is already running an inference; send the next "
                "request when the previous one has been answered"
            ))
        session.busy = True
        try:
            yield session
        finally:
            session.busy = False
            session.last_used = self.clock()

    def close(self, session_id: str) -> Session:
        """Close a session and delete its keys."""
        return self._remove(self.get(session_id))

    def _remove(self, session: Session) -> Session:
        del self._sessions[session.id]
        with suppress(FileNotFoundError):
            session.key_path.unlink()
        log.info("session %s closed after %d inferences (%d bytes in, %d out)", session.id,
                 session.inferences, session.bytes_in, session.bytes_out)
        return session

    def expire_idle(self) -> list[str]:
        """Close every session idle longer than the timeout; their ids."""
        now = self.clock()
        expired = [s.id for s in self._sessions.values()
                   if not s.busy and now - s.last_used > self.idle_timeout]
        for session_id in expired:
            log.info("session %s expired after %g s idle", session_id, self.idle_timeout)
            self._remove(self._sessions[session_id])
        return expired

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self._remove(session)
