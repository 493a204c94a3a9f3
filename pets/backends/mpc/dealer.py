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
import re
from typing import Any

import torch

from pets.backends.mpc._crypten import load_crypten
from pets.backends.mpc.engine import MPCConfig, communicator, start, stop
from pets.backends.mpc.prefetch import BATCH, serve_batch
from pets.errors import ParameterError, ProtocolError

__all__ = ["serve"]

_log = logging.getLogger(__name__)
_FUNCTIONS = ("additive", "square", "binary", "wraps", "B2A")
#: The products CrypTen asks additive triples for (the dealer calls torch.<operation>).
_OPERATIONS = ("mul", "matmul", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
_KEYWORDS = {"stride", "padding", "dilation", "groups", "output_padding"}


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
            function, device, args, kwargs = check_request(message)
            server.device = device
            if function == BATCH:  # a repeated step's requests at once (prefetch)
                result = serve_batch(server, *args)
            else:
                result = getattr(server, function)(*args, **kwargs)
            comm.send_obj(result.size(), 0, DEALER_LINK)
            comm.broadcast(result, config.rank, DEALER_LINK)
            served += 1
    finally:
        _log.info("dealer served %d requests", served)
        stop(clean=clean)


def check_request(message: Any) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """``(function, device, args, kwargs)`` of a triple request, every field checked.

    Sizes were bounded when the message was decoded; the operation of an
    ``additive`` triple must be one CrypTen makes (the dealer looks it up on torch);
    keyword arguments (a convolution's stride, padding, ...) must be small integers;
    a ``batch`` (a repeated step's requests, :mod:`pets.backends.mpc.prefetch`) holds
    requests that pass the same checks. Anything else is a
    :class:`~pets.errors.ProtocolError`.
    """
    if not (isinstance(message, dict) and set(message) == {"function", "device", "args",
                                                            "kwargs"}):
        raise ProtocolError(f"the dealer got a request it does not serve: {str(message)[:200]}")
    function, device, args, kwargs = (message[k] for k in ("function", "device", "args",
                                                           "kwargs"))
    device_ok = device is None or (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d{1,2})?",
                                                                          device))
    if not device_ok:
        raise ProtocolError(f"the dealer got a request for device {str(device)[:40]!r}")
    if function == BATCH:
        if not (isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], list)
                and kwargs == {}):
            raise ProtocolError(f"the dealer got a malformed batch: {str(message)[:200]}")
        sequence = []
        for item in args[0]:
            if not (isinstance(item, (list, tuple)) and len(item) == 4):
                raise ProtocolError(f"the dealer got a malformed batch item: {str(item)[:200]}")
            name, _, item_args, item_kwargs = item
            sequence.append((name, None, *_checked_call(name, item_args, item_kwargs)))
        return function, device or "cpu", (sequence,), {}
    return function, device or "cpu", *_checked_call(function, args, kwargs)


def _checked_call(function: Any, args: Any, kwargs: Any) -> tuple[tuple[Any, ...],
                                                                  dict[str, Any]]:
    """One triple function's arguments, checked (see :func:`check_request`)."""
    if function not in _FUNCTIONS or not isinstance(args, (tuple, list)) or not isinstance(
            kwargs, dict):
        raise ProtocolError(f"the dealer got a request it does not serve: {str(function)[:40]}")
    sizes = [a for a in args if isinstance(a, torch.Size)]
    others = [a for a in args if not isinstance(a, torch.Size)]
    operation_ok = (others == [] if function != "additive"
                    else len(others) <= 1 and all(op in _OPERATIONS for op in others))
    small = all((isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1024) or
                (isinstance(v, tuple) and len(v) <= 4 and all(
                    isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1024 for n in v))
                for v in kwargs.values())
    if not sizes or not operation_ok or not small or set(kwargs) - _KEYWORDS:
        raise ProtocolError(f"the dealer got a malformed {function!r} request: "
                            f"{str((args, kwargs))[:200]}")
    return tuple(args), dict(kwargs)


def _triple_maker(crypten: Any) -> Any:
    """CrypTen's TTPServer with its triple methods, without its own set-up and loop."""
    import torch.distributed as dist

    server_class = crypten.mpc.provider.ttp_provider.TTPServer
    server = server_class.__new__(server_class)  # its __init__ would call crypten.init()
    server.ttp_group = dist.group.WORLD
    server.comm_group = None
    server.device = "cpu"
    return server
