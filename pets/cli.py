"""The ``pets`` command line.

The library's own commands live here (``pets party``, ``pets info``,
``pets verify-record``). Every other subcommand comes from the entry-point group
``pets.commands``: an application (the tour, the bench engine, the HTTP service)
registers a :class:`Command` there, and this module lists what is registered at
run time without ever importing an application by name.

>>> from pets.cli import build_parser
>>> build_parser().parse_args(["info"]).command
'info'

An application registers a command in its ``pyproject.toml``::

    [project.entry-points."pets.commands"]
    hello = "my_package.command:HELLO"

where ``HELLO = pets.cli.Command("hello", "say hello", configure, run)``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ENTRY_POINT_GROUP", "Command", "build_parser", "heading", "main", "say"]

ENTRY_POINT_GROUP = "pets.commands"


def say(message: str) -> None:
    """A progress line, time-stamped the same way by every command."""
    print(f"[pets {time.strftime('%H:%M:%S')}] {message}", flush=True)


def heading(title: str) -> None:
    """A section heading in a command's output."""
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)


@dataclass(frozen=True)
class Command:
    """One ``pets`` subcommand: its name, a one-line help, its options and what it runs.

    ``configure`` adds the options to the subcommand's parser; ``run`` gets the parsed
    arguments and returns the exit status. Keep the module that defines a command
    light: import what ``run`` needs inside ``run``.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- the library's own commands ----------------------------------------------------


def _party(args: argparse.Namespace) -> int:
    """One party (or the dealer) of an MPC run, started by hand: ``pets party``."""
    import importlib
    import os
    import warnings

    from pets.backends.mpc.engine import MPCConfig, insecure_provider_message, run_secret
    from pets.errors import InsecureProviderWarning, ParameterError
    from pets.parties import party_main

    if args.dealer and args.provider != "ttp":
        raise ParameterError("--dealer serves provider 'ttp' only; 'tfp' runs without a dealer")
    rank = args.parties if args.dealer else args.rank
    if rank is None:
        raise ParameterError("give this party's --rank (0 to --parties - 1), or --dealer")
    config = MPCConfig(parties=args.parties, rank=rank, provider=args.provider,
                       precision_bits=args.precision, timeout=args.timeout,
                       address=args.address, port=args.port,
                       secret=run_secret(args.secret_file))
    if args.provider == "tfp":
        warnings.warn(insecure_provider_message(), InsecureProviderWarning, stacklevel=1)
    fn = None
    if not args.dealer:
        if not args.function or ":" not in args.function:
            raise ParameterError("name the function each party runs as MODULE:FUNCTION")
        sys.path.insert(0, os.getcwd())
        module, _, name = args.function.partition(":")
        fn = getattr(importlib.import_module(module), name)
    if args.network:
        from pets.network import network

        network(args.network)
    result = party_main(config, fn, (), {}, None)
    print(f"pets party {rank}: {result!r}" if not args.dealer else
          f"pets dealer: served {result} requests", flush=True)
    return 0


def _configure_party(p: argparse.ArgumentParser) -> None:
    p.add_argument("function", nargs="?", help="MODULE:FUNCTION that gets the party")
    p.add_argument("--rank", type=int, help="this party's rank, 0 to --parties - 1")
    p.add_argument("--parties", type=int, required=True, help="number of parties (no dealer)")
    p.add_argument("--address", default="127.0.0.1", help="party 0's host (rendezvous)")
    p.add_argument("--port", type=int, default=29500, help="rendezvous port at party 0")
    p.add_argument("--provider", choices=["ttp", "tfp"], default="ttp",
                   help="ttp: a dealer process makes triples; tfp: party 0 does (sees all)")
    p.add_argument("--dealer", action="store_true", help="run the dealer (provider ttp)")
    p.add_argument("--precision", type=int, default=16, help="fixed-point bits")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a peer")
    p.add_argument("--network", metavar="lan|wan|RTT,BANDWIDTH",
                   help="emulate a link: lan, wan (40 ms, 100 Mbit/s) or RTT ms,Mbit/s")
    p.add_argument("--secret-file", help="file holding the run secret every party and the "
                   "dealer share (default: the PETS_RUN_SECRET environment variable)")


def _info(args: argparse.Namespace) -> int:
    """Which backends are registered and whether their engines import; which commands."""
    import pets

    for name in pets.available_backends():
        try:
            pets.registry.backend_class(name)
            status = "ok"
        except pets.BackendNotInstalledError as exc:
            status = str(exc)
        print(f"{name:8} {status}")
    commands = sorted(entry.name for entry in _entry_points())
    print(f"commands from applications ({ENTRY_POINT_GROUP}): {', '.join(commands) or 'none'}")
    return 0


def _verify_record(args: argparse.Namespace) -> int:
    """Check a run record's hash chain (and HMACs, given a key file); name the first bad line."""
    from pathlib import Path

    import pets

    key = None
    if args.key_file:
        try:
            key = Path(args.key_file).read_bytes().strip()
        except OSError as exc:
            raise pets.SerializationError(
                f"cannot read the key file {args.key_file}: {exc.strerror}. Fix: pass the "
                "file holding the key the record was written with."
            ) from exc
    report = pets.verify_record(args.path, key=key, head=args.head)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def _configure_verify_record(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the JSON-lines record written by pets.record")
    p.add_argument("--head", help="the head hash kept elsewhere (catches removed last lines)")
    p.add_argument("--key-file", help="file holding the HMAC key the record was written with")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


BUILTIN_COMMANDS = (
    Command("party", "one party (or the dealer) of an MPC run, by hand",
            _configure_party, _party),
    Command("info", "registered backends and their engines, and the commands installed",
            lambda p: None, _info),
    Command("verify-record", "check a pets.record run record's hash chain",
            _configure_verify_record, _verify_record),
)


# ---- commands from the applications ------------------------------------------------


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                  key=lambda entry: entry.name)


def _unloadable(name: str, error: Exception) -> Command:
    """A registered command whose module fails to import: say so when it is used."""

    def run(args: argparse.Namespace) -> int:
        print(f"pets: the command {name!r} is registered but cannot load: "
              f"{type(error).__name__}: {error}. Fix: install the extra it needs "
              "(make setup installs every extra).", file=sys.stderr)
        return 2

    return Command(name, f"(cannot load: {type(error).__name__})", lambda p: None, run)


def registered_commands() -> list[Command]:
    """The library's commands, then every command the ``pets.commands`` group registers."""
    commands = list(BUILTIN_COMMANDS)
    taken = {command.name for command in commands}
    for entry in _entry_points():
        if entry.name in taken:
            continue  # a second distribution registering the same name: the first wins
        try:
            command = entry.load()
        except Exception as exc:  # an application whose extra is missing
            command = _unloadable(entry.name, exc)
        if not isinstance(command, Command):
            command = _unloadable(entry.name, TypeError(
                f"{entry.value} is a {type(command).__name__}, not a pets.cli.Command"))
        commands.append(command)
        taken.add(entry.name)
    return commands


def build_parser() -> argparse.ArgumentParser:
    from pets import __version__

    parser = argparse.ArgumentParser(
        prog="pets",
        description="pets: privacy-enhancing technologies for machine learning (homomorphic "
        "encryption, multi-party computation, differential privacy, federated learning) "
        "behind one interface, with their cost measured against plaintext.",
        epilog="Run 'pets COMMAND --help' for a command's options. Errors print as "
        "'pets: ErrorName: what went wrong. Fix: ...' and exit with status 2. "
        "Guides: README.md and docs/ in the source tree.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pets {__version__}",
        help="print the pets version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in registered_commands():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import pets

        if isinstance(exc, pets.PetsError):
            print(f"pets: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
