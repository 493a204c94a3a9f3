"""Flower's deployment engine on localhost: a SuperLink, N SuperNodes and ``flwr run``.

What an operator types in separate terminals (``docs/federated.md``), done here
for the example and the tests: enrol (the key authority writes the clients' key
set and the server's public keys), start ``flower-superlink``, start one
``flower-supernode`` per client with its own node config (partition, key file,
DP policy), then ``flwr run protocols/pets_protocols/federated/app`` and wait for the result
file the ServerApp writes. Every process gets its own log file; a failure
raises ``PartyError`` with the end of the logs.

>>> # with LocalFederation(workdir, clients=3, epsilon=8.0, rounds=2) as federation:
>>> #     result = federation.run()
>>> # result["accuracy"], result["reports"]
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pets
from pets_protocols.federated import packing

__all__ = ["APP_DIR", "Enrolment", "LocalFederation", "enrol", "free_port"]

APP_DIR = Path(__file__).resolve().parent / "app"
_CONNECTION = "pets-local"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Enrolment:
    """Where the key authority put the key files."""

    key_file: Path  # the key set with the secret key: every client, never the server
    public_file: Path  # the public keys: the server


def enrol(directory: str | os.PathLike[str], keys: pets.Backend | None = None) -> Enrolment:
    """Make (or take) the federation's key set and write the two files the parties get."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    keys = keys or packing.make_keys()
    key_file, public_file = folder / "federation.key", folder / "federation.pub"
    key_file.write_bytes(keys.to_bytes(include_secret_key=True))
    key_file.chmod(0o600)
    public_file.write_bytes(keys.public().to_bytes())
    return Enrolment(key_file, public_file)


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise pets.PartyError(
            f"{name} is not installed next to {sys.executable}; install Flower with "
            "pip install 'flwr[simulation]>=1.42,<1.43' (the pets 'fl' extra)"
        )
    return str(path)


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies, so no party is
    left running after a crash of the process that started it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _toml(value: Any) -> str:
    return f"'{value}'" if isinstance(value, (str, Path)) else str(value)


def _pairs(config: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_toml(value)}" for key, value in config.items())


class LocalFederation:
    """A SuperLink and ``clients`` SuperNodes on localhost (each its own process group).

    Each client's node config holds its partition, the key file and its DP policy:
    ``epsilon`` (total, at ``delta``) over ``rounds`` planned rounds, clip norm
    ``clip_norm``, noise in ``noise_clients`` shares. ``fail_at={partition: round}``
    makes that client crash in that round.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        clients: int = 3,
        rounds: int = 3,
        epsilon: float = 8.0,
        delta: float = 1e-5,
        clip_norm: float = 1.0,
        noise_clients: int | None = None,
        fail_at: Mapping[int, int] | None = None,
        keys: pets.Backend | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.clients = clients
        self.rounds = rounds
        self.noise_clients = noise_clients or max(1, clients - 1)
        self.policy = {"epsilon": float(epsilon), "delta": float(delta),
                       "planned-rounds": rounds, "clip-norm": float(clip_norm),
                       "noise-clients": self.noise_clients}
        self.fail_at = dict(fail_at or {})
        self.keys = keys
        self.home = self.workdir / "flwr-home"
        self.logs = self.workdir / "logs"
        self.port = 0
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []
        self.enrolment: Enrolment | None = None

    # ---- processes --------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) by
        # name: this interpreter's scripts directory goes first on PATH
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, "FLWR_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1"}

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=self._environment(), start_new_session=True,
                                   preexec_fn=_die_with_parent)
        self.processes[name] = process
        return process

    def _wait_for_port(self, port: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes["superlink"].poll() is not None:
                raise pets.PartyError(f"flower-superlink exited early. {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.2)
        raise pets.PartyError(f"flower-superlink did not listen within {timeout} s. "
                              f"{self.log_tail()}")

    def __enter__(self) -> LocalFederation:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.enrolment = enrol(self.workdir / "keys", self.keys)
        self.port = free_port()
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{_CONNECTION}"\n\n[superlink.{_CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n', encoding="utf-8")
        try:
            self._start("superlink", [
                _tool("flower-superlink"), "--insecure", "--port", str(self.port),
                "--database", str(self.workdir / "superlink.db"),
                "--disable-runtime-dependency-installation",
            ])
            self._wait_for_port(self.port)
            for partition in range(self.clients):
                self.start_node(partition)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, partition: int) -> None:
        """Start (or restart) the SuperNode of client ``partition``."""
        assert self.enrolment is not None
        config: dict[str, Any] = {"partition-id": partition, "num-partitions": self.clients,
                                  "key-file": self.enrolment.key_file, **self.policy}
        if partition in self.fail_at:
            config["fail-at-round"] = self.fail_at[partition]
        self._start(f"supernode-{partition}", [
            _tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
            "--port", str(free_port()), "--node-config", _pairs(config),
            "--max-wait-time", "60",  # give up, and exit, 60 s after losing the SuperLink
        ])

    def stop_node(self, partition: int) -> None:
        """Kill client ``partition``'s SuperNode and its ClientApp processes at once."""
        self._kill(self.processes[f"supernode-{partition}"], signal.SIGKILL)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes], sig: int) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def close(self) -> None:
        """Stop every process started here and every process they started (Flower detaches
        its helpers into sessions of their own): TERM, then KILL after 10 s."""
        helpers = {pid for process in self.processes.values() for pid in _descendants(process.pid)}
        for process in self.processes.values():
            self._kill(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill(process, signal.SIGKILL)
                process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (alive := [pid for pid in helpers if _alive(pid)]) and time.monotonic() < deadline:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for log in self._files:
            log.close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every log, for error messages."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}:\n" + "\n".join(text))
        return "Logs:\n" + "\n".join(parts)

    # ---- a run --------------------------------------------------------------------------

    def run(
        self,
        *,
        rounds: int | None = None,
        min_clients: int | None = None,
        split: str = "iid",
        local_epochs: int = 2,
        lr: float = 0.1,
        round_timeout: float = 60.0,
        timeout: float = 600.0,
        initial_state: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """``flwr run`` the pets app on this federation; the ServerApp's result as a dict.

        Raises ``PartyError`` (its message the ServerApp's) when the run fails.
        """
        assert self.enrolment is not None
        result_file = self.workdir / "result.json"
        result_file.unlink(missing_ok=True)
        config = {
            "num-server-rounds": rounds or self.rounds,
            "min-clients": min_clients or self.noise_clients,
            "min-available-clients": self.clients,
            "local-epochs": local_epochs, "lr": float(lr), "split": split,
            "round-timeout": float(round_timeout),
            "public-key-file": self.enrolment.public_file,
            "result-file": result_file, "state-file": self.workdir / "state.npz",
            "initial-state-file": initial_state or "",
        }
        command = [_tool("flwr"), "run", str(APP_DIR), _CONNECTION, "--run-config",
                   _pairs(config), "--stream"]
        log = self.logs / "flwr-run.log"
        with log.open("wb") as output:
            try:
                subprocess.run(command, stdout=output, stderr=subprocess.STDOUT,
                               env=self._environment(), timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise pets.PartyError(
                    f"the federated run did not finish within {timeout} s. {self.log_tail()}"
                ) from None
        if not result_file.exists():
            raise pets.PartyError(f"the ServerApp wrote no result. {self.log_tail()}")
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        if result.get("error"):
            error = pets.PartyError(f"the federated run failed: {result['error']}")
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result
