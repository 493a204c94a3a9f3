"""The trusted-third-party dealer: a process of its own that makes Beaver triples.

With provider ``"ttp"`` the dealer shares one random seed with each party, so
every party can draw its own shares of ``a`` and ``b`` locally; only party 0
asks the dealer for its share of ``c = a * b`` (or of a square, a binary triple,
wraps, a random bit). The dealer therefore knows the triples, never the data:
it must not collude with any party. CrypTen's ``TTPServer`` computes the
triples; this module runs it over the pets communicator, so the dealer stops
when party 0 says so or goes away, and its traffic is counted as offline.
"""

from __future__ import annotations

import logging
from typing import Any

from pets.backends.mpc._crypten import load_crypten
from pets.backends.mpc.engine import MPCConfig, communicator, start, stop
from pets.errors import ParameterError, PartyError

__all__ = ["serve"]

_log = logging.getLogger(__name__)
_FUNCTIONS = ("additive", "square", "binary", "wraps", "B2A", "batch")


def serve(config: MPCConfig) -> int:
    """Join the run as its dealer and answer party 0's requests until it finishes.

    Returns the number of requests served. Raises :class:`~pets.errors.PartyError`
    when party 0 goes away without saying goodbye.
    """
    if not config.is_dealer:
        raise ParameterError(f"rank {config.rank} is not the dealer: the dealer of "
                             f"{config.parties} parties with provider 'ttp' is rank "
                             f"{config.parties}")
    crypten = load_crypten()
    start(config)
    served = 0
    clean = False
    try:
        server = _triple_maker(crypten)
        server._setup_generators()  # one seed per party, sent over the dealer's links
        comm = communicator()
        from pets.backends.mpc.communicator import DEALER_LINK

        while True:
            message = comm.recv_obj(0, DEALER_LINK)
            if message == "terminate":
                clean = True
                return served
            if not isinstance(message, dict) or message.get("function") not in _FUNCTIONS:
                raise PartyError(f"the dealer got a request it does not serve: {message!r}")
            server.device = message["device"] or "cpu"
            if message["function"] == "batch":  # a repeated step's requests at once (prefetch)
                from pets.backends.mpc.prefetch import serve_batch

                result = serve_batch(server, *message["args"])
            else:
                result = getattr(server, message["function"])(*message["args"],
                                                              **message["kwargs"])
            comm.send_obj(result.size(), 0, DEALER_LINK)
            comm.broadcast(result, config.rank, DEALER_LINK)
            served += 1
    finally:
        _log.info("dealer served %d requests", served)
        stop(clean=clean)


def _triple_maker(crypten: Any) -> Any:
    """CrypTen's TTPServer with its triple methods, without its own set-up and loop."""
    import torch.distributed as dist

    server_class = crypten.mpc.provider.ttp_provider.TTPServer
    server = server_class.__new__(server_class)  # its __init__ would call crypten.init()
    server.ttp_group = dist.group.WORLD
    server.comm_group = None
    server.device = "cpu"
    return server
