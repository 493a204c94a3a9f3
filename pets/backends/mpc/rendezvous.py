"""How the parties of one run find each other, prove they belong, and check they agree.

Party 0 hosts a ``torch.distributed`` TCP store at ``address:port``; every other
process (the other parties, the dealer) connects to it. Party 0 posts a fresh
random run nonce; then each process takes the next place in the list of joiners
and posts its *hello* there (protocol version, rank, number of parties, provider,
fixed-point precision, role), signed with an HMAC-SHA256 keyed from the run's
secret (:data:`MPCConfig.secret <pets.backends.mpc.engine.MPCConfig>`) over the
hello, its place and the nonce. Each process reads every joiner's hello:

* a hello that is not pets' JSON, or not of the shape pets writes, is refused as a
  :class:`~pets.errors.ProtocolError`, one whose HMAC does not verify (a stranger
  without the secret, or a hello copied from elsewhere) as an
  :class:`~pets.errors.AuthenticationError`: each is logged (logger
  ``pets.backends.mpc.rendezvous``, level WARNING) and skipped, so a stranger cannot
  take a real party's rank; if the rank it claimed never gets a genuine hello, that
  refusal is the error raised at the timeout;
* a genuine hello that disagrees (party count, provider, precision, version), a
  rank claimed twice, or a rank outside the run ends the rendezvous at once with a
  :class:`~pets.errors.PartyError` naming both sides;
* the rendezvous ends when every rank has a genuine hello, or at the timeout,
  naming who never joined. Losing party 0's store (it stopped) is a
  :class:`~pets.errors.PartyError` too.

The hello authenticates the processes at the rendezvous. The links that
``torch.distributed`` (gloo) then opens between them are plain TCP: see
``docs/security.md`` for what a network observer learns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from pets.errors import AuthenticationError, ParameterError, PartyError, ProtocolError

if TYPE_CHECKING:
    from pets.backends.mpc.engine import MPCConfig

__all__ = ["MAX_HELLO_BYTES", "PROTOCOL", "Hello", "meet", "read_hello", "sign_hello"]

_log = logging.getLogger(__name__)

#: Version of what parties say to each other; parties of different versions refuse to meet.
PROTOCOL = 2
#: Largest hello read from the store (a genuine one is about 250 bytes).
MAX_HELLO_BYTES = 4096
#: Most joiners read before the rendezvous gives up (strangers included).
MAX_JOINERS = 1024
_POLL_SECONDS = 0.05
_NONCE_KEY = "pets/nonce"
_COUNT_KEY = "pets/joiners"
_FIELDS = {"protocol": int, "rank": int, "parties": int, "provider": str,
           "precision_bits": int, "role": str, "place": int}


@dataclass(frozen=True)
class Hello:
    """What one process says about itself at the rendezvous."""

    protocol: int
    rank: int
    parties: int
    provider: str
    precision_bits: int
    role: str
    place: int

    @classmethod
    def of(cls, config: MPCConfig, place: int) -> Hello:
        return cls(PROTOCOL, config.rank, config.parties, config.provider,
                   config.precision_bits, "dealer" if config.is_dealer else "party", place)


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"pets rendezvous hello", hashlib.sha256).digest()


def _mac(secret: str, fields: dict[str, Any], nonce: str) -> str:
    body = json.dumps([fields, nonce], sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def sign_hello(hello: Hello, secret: str, nonce: str) -> bytes:
    """The bytes a process posts: its hello and the HMAC that proves it knows ``secret``."""
    fields = asdict(hello)
    return json.dumps({"hello": fields, "mac": _mac(secret, fields, nonce)}).encode()


def read_hello(data: bytes, secret: str, nonce: str, place: int) -> Hello:
    """The hello posted at ``place``, or :class:`ProtocolError` (malformed) /
    :class:`AuthenticationError` (not signed with this run's secret)."""
    if len(data) > MAX_HELLO_BYTES:
        raise ProtocolError(f"joiner {place} posted {len(data)} bytes, not a hello "
                            f"(at most {MAX_HELLO_BYTES})")
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(f"joiner {place} posted something that is not a pets hello "
                            "(not JSON)") from None
    if not (isinstance(envelope, dict) and set(envelope) == {"hello", "mac"}
            and isinstance(envelope["hello"], dict) and isinstance(envelope["mac"], str)):
        raise ProtocolError(f"joiner {place} posted a hello of another shape (expected "
                            "{hello, mac}): another pets version, or not pets")
    fields = envelope["hello"]
    try:
        expected = _mac(secret, fields, nonce)
    except (TypeError, ValueError, RecursionError):
        raise ProtocolError(f"joiner {place} posted a hello pets cannot read") from None
    if not hmac.compare_digest(expected.encode(), envelope["mac"].encode("utf-8", "replace")):
        raise AuthenticationError(
            f"joiner {place} does not know this run's secret (its hello's HMAC does not "
            "verify): a stranger, or a process started with another --secret-file / "
            "PETS_RUN_SECRET; give every party and the dealer the same secret"
        )
    if set(fields) != set(_FIELDS) or not all(
        isinstance(fields[name], kind) and not isinstance(fields[name], bool)
        for name, kind in _FIELDS.items()
    ):
        raise ProtocolError(f"joiner {place} signed a hello whose fields pets does not know "
                            f"({sorted(fields)}): run the same pets version everywhere")
    hello = Hello(**fields)
    if hello.place != place:
        raise ProtocolError(f"joiner {place} posted the hello of place {hello.place} "
                            "(copied from elsewhere)")
    return hello


def _name(config: MPCConfig, rank: int) -> str:
    return f"the dealer (rank {rank})" if rank == config.dealer_rank else f"party {rank}"


def _open_store(config: MPCConfig) -> Any:
    where = f"{config.address}:{config.port}"
    timeout = timedelta(seconds=config.timeout)
    try:
        store_class = dist.TCPStore  # type: ignore[attr-defined]
        return store_class(config.address, config.port, config.world_size,
                           is_master=config.rank == 0, timeout=timeout, wait_for_workers=False)
    except (RuntimeError, OSError) as exc:  # DistNetworkError is a RuntimeError
        text = str(exc).lower()
        if config.rank == 0 and ("in use" in text or "eaddrinuse" in text or "bind" in text):
            raise ParameterError(
                f"party 0 cannot host the rendezvous: port {config.port} on {config.address} is "
                f"already in use (another program, or another party 0); choose another port, "
                f"or let run_parties pick a free one (port=None)"
            ) from exc
        if config.rank == 0:
            raise PartyError(f"party 0 cannot host the rendezvous at {where}: {exc}") from exc
        raise PartyError(
            f"{_name(config, config.rank)} could not reach party 0's rendezvous at {where} "
            f"within {config.timeout:g} s: party 0 is not running there (not started yet, "
            f"already stopped, or the address or port is wrong); start party 0 first with the "
            f"same --address and --port"
        ) from exc


class _Store:
    """The TCP store, each call's failure (party 0 went away) a :class:`PartyError`."""

    def __init__(self, store: Any, config: MPCConfig) -> None:
        self.store, self.config = store, config

    def __call__(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.store, method)(*args)
        except (RuntimeError, OSError) as exc:  # DistNetworkError, DistStoreError
            raise PartyError(
                f"{_name(self.config, self.config.rank)} lost party 0's rendezvous at "
                f"{self.config.address}:{self.config.port} ({type(exc).__name__}): party 0 "
                "stopped or its host went away before every party had joined; check party 0's "
                "log and start the run again"
            ) from exc


def meet(config: MPCConfig) -> tuple[Any, str]:
    """Connect to the run's rendezvous, say hello, and wait until every rank has a genuine,
    agreeing hello.

    Returns the store, to be handed to ``torch.distributed.init_process_group``, and the
    run nonce every genuine hello was signed with (the channel's keys depend on it).
    """
    store = _open_store(config)
    call = _Store(store, config)
    if config.rank == 0:  # party 0 keeps its own fresh nonce, whatever the store holds later
        nonce = secrets.token_hex(16)
        call("set", _NONCE_KEY, nonce)
    else:
        nonce = bytes(call("get", _NONCE_KEY)).decode("ascii", "replace")
    place = int(call("add", _COUNT_KEY, 1))
    mine = Hello.of(config, place)
    call("set", f"pets/joiner/{place}", sign_hello(mine, config.secret, nonce))
    _Rendezvous(config, call, mine, nonce).wait()
    return store, nonce


class _Rendezvous:
    """The reading side of :func:`meet`: every joiner's hello, until all ranks are in."""

    def __init__(self, config: MPCConfig, call: _Store, mine: Hello, nonce: str) -> None:
        self.config, self.call, self.mine, self.nonce = config, call, mine, nonce
        self.me = _name(config, config.rank)
        self.joined: dict[int, int] = {}  # rank -> place of its genuine hello
        self.refused: dict[int, PartyError] = {}  # place -> why
        self.read: set[int] = set()

    def wait(self) -> None:
        deadline = time.monotonic() + self.config.timeout
        while len(self.joined) < self.config.world_size:
            count = min(int(self.call("add", _COUNT_KEY, 0)), MAX_JOINERS)
            for place in range(1, count + 1):
                key = f"pets/joiner/{place}"
                if place not in self.read and self.call("check", [key]):
                    self.read.add(place)
                    self._admit(place, bytes(self.call("get", key)))
            if len(self.joined) == self.config.world_size:
                return
            if time.monotonic() > deadline:
                raise self._missing()
            time.sleep(_POLL_SECONDS)

    def _admit(self, place: int, data: bytes) -> None:
        try:
            hello = read_hello(data, self.config.secret, self.nonce, place)
        except (ProtocolError, AuthenticationError) as refusal:
            _log.warning("%s refused a joiner of the rendezvous at %s:%d: %s", self.me,
                         self.config.address, self.config.port, refusal)
            self.refused[place] = refusal
            return
        _compare(self.config, self.me, self.mine, hello)
        if hello.rank in self.joined:
            raise PartyError(
                f"two processes claim rank {hello.rank} in this run (both with the run's "
                f"secret); start each party with its own --rank (0 to {self.config.parties - 1}"
                + (f", and {self.config.parties} for the dealer)" if self.config.dealer_rank
                   else ")")
            )
        self.joined[hello.rank] = place

    def _missing(self) -> PartyError:
        waiting = [r for r in range(self.config.world_size) if r not in self.joined]
        names = [_name(self.config, r) for r in waiting]
        missing = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        where = f"{self.config.address}:{self.config.port}"
        if self.refused:
            last = list(self.refused.values())[-1]
            return type(last)(
                f"{self.me} waited {self.config.timeout:g} s at {where} but {missing} never "
                f"joined with this run's secret, and {len(self.refused)} joiner(s) were "
                f"refused; the last: {last}"
            )
        return PartyError(
            f"{self.me} waited {self.config.timeout:g} s at {where} but {missing} never "
            f"joined; start every party (and the dealer with provider 'ttp') with the same "
            f"address, port and party count"
        )


def _compare(config: MPCConfig, me: str, mine: Hello, theirs: Hello) -> None:
    rank = theirs.rank
    who = (f"the dealer (rank {rank})" if theirs.role == "dealer" else f"party {rank}")
    if theirs.protocol != mine.protocol:
        raise PartyError(f"{who} speaks pets protocol {theirs.protocol}, {me} speaks "
                         f"{mine.protocol}; run the same pets version everywhere")
    if theirs.parties != mine.parties:
        raise PartyError(
            f"{who} was started for {theirs.parties} parties, {me} for {mine.parties}; start "
            f"every party with the same party count (--parties)"
        )
    for field, flag in (("provider", "--provider"), ("precision_bits", "precision")):
        if getattr(theirs, field) != getattr(mine, field):
            raise PartyError(
                f"{who} uses {field}={getattr(theirs, field)!r}, {me} uses "
                f"{getattr(mine, field)!r}; every party must use the same {flag}"
            )
    if not 0 <= rank < config.world_size:
        raise PartyError(f"{who} joined with rank {rank}, outside this run's ranks 0 to "
                         f"{config.world_size - 1}")
    expected_role = "dealer" if rank == config.dealer_rank else "party"
    if theirs.role != expected_role:
        raise PartyError(f"rank {rank} joined as a {theirs.role} but should be the "
                         f"{expected_role}; check the ranks and --dealer flags")
