"""How the parties of one run find each other and check they agree, before any data moves.

Party 0 hosts a ``torch.distributed`` TCP store at ``address:port``; every other
process (the other parties, the dealer) connects to it. Each claims its rank
and posts a *hello* (protocol version, number of parties, provider, fixed-point
precision); each waits, up to the timeout, until every rank has said hello and
all agree. So a wrong party count, a rank claimed twice, a rank out of range, a
port already in use and a party that never joins each end with a clear error
instead of a hang or a garbled computation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from pets.errors import ParameterError, PartyError

if TYPE_CHECKING:
    from pets.backends.mpc.engine import MPCConfig

__all__ = ["PROTOCOL", "meet"]

#: Version of what parties say to each other; parties of different versions refuse to meet.
PROTOCOL = 1
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class _Hello:
    protocol: int
    parties: int
    provider: str
    precision_bits: int
    role: str

    @classmethod
    def of(cls, config: MPCConfig) -> _Hello:
        return cls(PROTOCOL, config.parties, config.provider, config.precision_bits,
                   "dealer" if config.is_dealer else "party")


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
            f"within {config.timeout:g} s: party 0 never started, or the address or port is "
            f"wrong; start party 0 first with the same --address and --port"
        ) from exc


def meet(config: MPCConfig) -> Any:
    """Connect to the run's rendezvous, say hello, and wait until every rank agrees.

    Returns the store, to be handed to ``torch.distributed.init_process_group``.
    """
    store = _open_store(config)
    me = _name(config, config.rank)
    if store.add(f"pets/claim/{config.rank}", 1) > 1:
        raise PartyError(
            f"two processes claim rank {config.rank} in this run; start each party with its "
            f"own --rank (0 to {config.parties - 1}"
            + (f", and {config.parties} for the dealer)" if config.dealer_rank else ")")
        )
    mine = _Hello.of(config)
    store.set(f"pets/hello/{config.rank}", json.dumps(mine.__dict__))
    deadline = time.monotonic() + config.timeout
    waiting = set(range(config.world_size))
    while True:
        for rank in sorted(waiting):
            key = f"pets/hello/{rank}"
            if not store.check([key]):
                continue
            theirs = _Hello(**json.loads(store.get(key)))
            _compare(config, me, mine, rank, theirs)
            waiting.discard(rank)
        if not waiting:
            return store
        if time.monotonic() > deadline:
            names = [_name(config, r) for r in sorted(waiting)]
            missing = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise PartyError(
                f"{me} waited {config.timeout:g} s at {config.address}:{config.port} but "
                f"{missing} never joined; start every party (and the dealer with provider "
                f"'ttp') with the same address, port and party count"
            )
        time.sleep(_POLL_SECONDS)


def _compare(config: MPCConfig, me: str, mine: _Hello, rank: int, theirs: _Hello) -> None:
    who = f"{theirs.role} {rank}" if theirs.role == "party" else f"the dealer (rank {rank})"
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
    expected_role = "dealer" if rank == config.dealer_rank else "party"
    if theirs.role != expected_role:
        raise PartyError(f"rank {rank} joined as a {theirs.role} but should be the "
                         f"{expected_role}; check the ranks and --dealer flags")
