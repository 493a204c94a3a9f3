"""Helpers for the service tests: a real ``pets serve`` process and small exported models."""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"serving encrypted inference on (http://[\d.]+:(\d+))")


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def running_server(*args: str, timeout: float = 180.0) -> Iterator[Server]:
    """``pets serve ARGS --port 0`` in its own process, until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pets", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    lines: list[str] = []
    ready = threading.Event()
    found: list[re.Match[str]] = []

    def pump() -> None:  # keep reading, so a chatty server never blocks on its pipe
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            match = READY.search(line)
            if match and not found:
                found.append(match)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout)
    if not found:
        process.kill()
        process.wait()
        raise AssertionError("pets serve did not start:\n" + "\n".join(lines[-40:]))
    server = Server(found[0].group(1), int(found[0].group(2)), process, lines)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def export_model(folder: Path, sizes: tuple[int, ...], *, seed: int = 0,
                 samples: int = 32) -> tuple[Path, Path, object]:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` with square activations, exported with
    ``torch.export.save``; its file, a ``.npy`` of example inputs, and the torch module."""
    import torch

    import pets

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (n, m) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(pets.nn.Square())
        layers.append(torch.nn.Linear(n, m))
    net = torch.nn.Sequential(*layers).eval()
    x = torch.rand(samples, sizes[0]) * 2 - 1
    path, example = folder / "model.pt2", folder / "example.npy"
    torch.export.save(torch.export.export(net, (x,)), path)
    np.save(example, x.numpy())
    return path, example, net


def raw_request(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return receive_answer(sock, timeout=timeout)


def receive_answer(sock: socket.socket, *, timeout: float = 30.0) -> bytes:
    """What the server answers on ``sock``, until its body is complete or it closes."""
    chunks = []
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
            break
    return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return match is not None and len(body) >= int(match.group(1))


def resident_mib(pid: int) -> float:
    """The resident memory of process ``pid`` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")
