"""``pets.run_parties``: run one function in N real party processes, plus the dealer.

Each party is its own OS process (``multiprocessing`` spawn), joined to the
others over ``torch.distributed`` (gloo) through a TCP rendezvous; with provider
``"ttp"`` (the default) the dealer is one more process. ``fn(party, *args)``
runs in every party; the results come back in rank order. If any process
raises, dies or stops answering, every other process is stopped and
``run_parties`` raises :class:`~pets.errors.PartyError` naming the party and
what happened. No process outlives the call.

``fn`` must be importable by the party processes: define it at module level.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from pets.errors import ParameterError, PartyError, PetsError
from pets.launchable import check_launchable

__all__ = ["Party", "run_parties"]

_LOST_PEER = re.compile(r"Connection (closed|reset) by peer|Broken pipe|lost the connection")
_SETTLE_SECONDS = 2.0  # after a failure: how long the others get to report their own end
_STOP_SECONDS = 2.0  # after terminate: how long before kill
_BACKEND = "__pets_backend__"  # the backend's name, passed with its options


class PartyConfig(Protocol):
    """Where one process sits in a run (a backend's own configuration type)."""

    @property
    def rank(self) -> int: ...

    @property
    def parties(self) -> int: ...

    @property
    def is_dealer(self) -> bool:
        """Whether this process helps (e.g. deals correlated randomness) rather than computes."""
        ...


class PartyRuntime(Protocol):
    """What a multi-party backend gives :func:`run_parties` (``Backend.party_runtime()``):
    the processes of a run and how each one joins it. ``configs`` checks the options (its
    own ``provider`` rules) and returns one configuration per process; ``run`` is called in
    each process with its configuration and the party's body, and returns its result."""

    def configs(self, *, parties: int, provider: str | None, precision: int, device: str,
                timeout: float, address: str, port: int) -> Sequence[PartyConfig]: ...

    def run(self, config: Any, body: Callable[[], Any]) -> Any: ...


@dataclass
class Party:
    """What ``fn`` gets in each party process: its place in the run and its backend.

    ``backend`` is this party's backend (the one ``run_parties`` was given);
    ``config`` the backend's configuration of this process; ``log`` a logger named
    for the party.
    """

    rank: int
    parties: int
    backend: Any = None
    config: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pets.party"))


def run_parties(
    fn: Callable[..., Any],
    *,
    parties: int,
    timeout: float = 60.0,
    provider: str | None = None,
    backend: str = "mpc",
    precision: int = 16,
    device: str = "cpu",
    port: int | None = None,
    args: Sequence[Any] = (),
    **backend_options: Any,
) -> list[Any]:
    """Run ``fn(party, *args)`` in ``parties`` processes that compute together.

    ``timeout`` (seconds) bounds joining and every wait of a party for another;
    ``backend`` names any multi-party backend (one whose class gives a
    :class:`PartyRuntime`: ``"mpc"``, or ``"hybrid"``, two parties with linear layers
    under HE); ``provider`` is that backend's choice of who makes the correlated
    randomness (MPC: ``"ttp"``, the default, a dealer process that must not collude
    with any party; ``"tfp"``, party 0 makes the triples and can read everything:
    warns; ``"he"``, two parties make them under BFV, no dealer); ``precision`` is
    the fixed-point bits; ``port`` the rendezvous port (a free one when ``None``);
    ``backend_options`` go to ``pets.backend(backend)`` in each party.

    >>> from pets.parties import run_parties
    >>> run_parties(_rank_and_count, parties=2, timeout=20)
    [(0, 2), (1, 2)]
    """
    runtime = _runtime(backend)
    if not isinstance(parties, int) or isinstance(parties, bool) or parties < 2:
        raise ParameterError(f"run_parties needs at least 2 parties, got {parties!r}; for one "
                             f"process use pets.backend({backend!r}) directly")
    check_launchable(fn)  # a nested fn or an unguarded script, named before any process starts
    try:
        pickle.dumps((fn, tuple(args), backend_options))
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ParameterError(
            f"run_parties sends fn, args and options to each party's process, but they cannot "
            f"be pickled ({exc}); define fn at module level and pass plain data"
        ) from exc
    address = "127.0.0.1"
    if port is not None:
        _check_port_free(address, port)
    chosen = free_port(address) if port is None else port
    configs = runtime.configs(parties=parties, provider=provider, precision=precision,
                              device=device, timeout=timeout, address=address, port=chosen)
    options = {**backend_options, _BACKEND: backend}
    return _Supervisor(list(configs), fn, tuple(args), options).run()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ParameterError(
                f"port {port} on {address} is already in use; choose another port, or let "
                f"run_parties pick a free one (port=None)"
            ) from exc


def _rank_and_count(party: Party) -> tuple[int, int]:
    return party.rank, party.parties


# --- inside each party process ---------------------------------------------------


def party_main(config: Any, fn: Callable[..., Any] | None, args: tuple[Any, ...],
               backend_options: dict[str, Any], report: Connection | None) -> Any:
    """Run one party (or a helper such as a dealer) in this process; report the outcome on
    ``report`` (``backend_options`` name the backend, ``"mpc"`` by default)."""
    options = dict(backend_options)
    name = options.pop(_BACKEND, "mpc")
    outcome: tuple[Any, ...]
    try:
        def body() -> Any:
            from pets.registry import backend as make_backend

            party = Party(rank=config.rank, parties=config.parties,
                          backend=make_backend(name, **options), config=config,
                          log=logging.getLogger(f"pets.party{config.rank}"))
            assert fn is not None
            return fn(party, *args)

        outcome = ("ok", _runtime(name).run(config, body))
    except BaseException as exc:  # reported to the supervisor, never lost
        if report is None:
            raise
        outcome = ("error", type(exc).__name__, str(exc), traceback.format_exc())
    if report is None:
        return outcome[1]
    try:
        report.send(outcome)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        report.send(("error", "PartyError", f"its result could not be sent back ({exc}); "
                     f"return numbers, numpy arrays or other plain data", ""))
    report.close()
    return None


def _runtime(name: str) -> PartyRuntime:
    """The runtime of multi-party backend ``name``, or a ParameterError naming the fix."""
    from pets.registry import available_backends, backend_class

    runtime = backend_class(name).party_runtime()
    if runtime is None:
        raise ParameterError(
            f"run_parties launches multi-party backends, and {name!r} runs in one process; "
            f"use pets.backend({name!r}) directly, or a multi-party backend (registered: "
            f"{', '.join(available_backends())})"
        )
    return runtime


def _child(config: Any, fn: Any, args: tuple[Any, ...], options: dict[str, Any],
           report: Connection) -> None:
    """Entry point of a spawned party: stop at once if the supervisor goes away."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:
            wait([parent.sentinel])
            import os

            os._exit(70)

        threading.Thread(target=watch, daemon=True, name="pets-parent-watch").start()
    party_main(config, fn, args, options, report)


# --- the supervisor ----------------------------------------------------------------


@dataclass
class _Failure:
    rank: int
    what: str
    root: bool  # the party's own fault, not a consequence of another's
    traceback: str = ""
    cause: BaseException | None = None


class _Supervisor:
    def __init__(self, configs: list[Any], fn: Any, args: tuple[Any, ...],
                 options: dict[str, Any]) -> None:
        self.configs = configs
        self.context = multiprocessing.get_context("spawn")
        self.processes: dict[int, Any] = {}
        self.reports: dict[int, Connection] = {}
        self.fn, self.args, self.options = fn, args, options

    def _name(self, rank: int) -> str:
        return "the dealer" if self.configs[rank].is_dealer else f"party {rank}"

    def run(self) -> list[Any]:
        results: dict[int, Any] = {}
        failures: list[_Failure] = []
        try:
            for config in self.configs:
                receive, send = self.context.Pipe(duplex=False)
                process = self.context.Process(
                    target=_child, args=(config, self.fn, self.args, self.options, send),
                    name=f"pets-{self._name(config.rank).replace(' ', '-')}",
                )
                process.start()
                send.close()
                self.processes[config.rank], self.reports[config.rank] = process, receive
            self._collect(results, failures)
        finally:
            self._stop_all()
        if failures:
            raise self._error(failures)
        parties = self.configs[0].parties
        return [results[rank] for rank in range(parties)]

    def _collect(self, results: dict[int, Any], failures: list[_Failure]) -> None:
        open_ranks = set(self.processes)
        settle_until: float | None = None
        while open_ranks:
            if settle_until is not None and time.monotonic() > settle_until:
                return
            waitables: list[Any] = [self.reports[r] for r in open_ranks]
            waitables += [self.processes[r].sentinel for r in open_ranks]
            ready = wait(waitables, timeout=0.5)
            for rank in sorted(open_ranks):
                report, process = self.reports[rank], self.processes[rank]
                if report in ready or process.sentinel in ready:
                    outcome = self._outcome(rank, report, process)
                    if outcome is None:
                        continue
                    open_ranks.discard(rank)
                    if isinstance(outcome, _Failure):
                        failures.append(outcome)
                        if settle_until is None:
                            settle_until = time.monotonic() + _SETTLE_SECONDS
                    else:
                        results[rank] = outcome[0]

    def _outcome(self, rank: int, report: Connection, process: Any) -> Any:
        """``(result,)``, a :class:`_Failure`, or ``None`` when nothing is known yet."""
        try:
            if report.poll():
                message = report.recv()
                if message[0] == "ok":
                    return (message[1],)
                _, kind, text, trace = message
                # a peer's socket closing under it is the consequence of another failure
                own = kind != "PartyError" and not _LOST_PEER.search(text)
                return _Failure(rank, f"{kind}: {text}", own, trace, _rebuild(kind, text))
        except (EOFError, OSError):
            pass
        if process.is_alive():
            return None
        process.join()
        return _Failure(rank, f"exited with code {process.exitcode} before finishing "
                              f"(it crashed, called os._exit, or was killed)", True)

    def _error(self, failures: list[_Failure]) -> PartyError:
        first = next((f for f in failures if f.root), failures[0])
        others = [f for f in failures if f is not first]
        message = f"{self._name(first.rank)} failed: {first.what}"
        if others:
            message += "\n  then: " + "\n  then: ".join(
                f"{self._name(f.rank)}: {f.what}" for f in others)
        if first.traceback:
            message += f"\n  traceback in {self._name(first.rank)}:\n{first.traceback}"
        error = PartyError(message)
        error.__cause__ = first.cause
        return error

    def _stop_all(self) -> None:
        """Terminate, then kill, whatever is still running; reap every process."""
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + _STOP_SECONDS
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
                process.join()
        for report in self.reports.values():
            report.close()


def _rebuild(kind: str, text: str) -> BaseException | None:
    """The party's pets error, rebuilt from its name, as the ``__cause__`` of the report."""
    from pets import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, PetsError):
        try:
            return cls(text)
        except TypeError:
            return None
    return None
