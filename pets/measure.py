"""``pets.measure()``: what a block of private computation cost.

Time (wall and CPU), peak resident memory above the start, bytes this process
sent to and received from other parties and rounds it waited for (counted by
transports), and bytes serialised (``to_bytes``: ciphertext and key sizes,
whether or not they are sent). Measurements nest: an inner block's counts add
to the outer one. The active measurements live in a context variable, so
concurrent measurements (threads started inside a block excepted, asyncio
tasks and requests of a server each in their own context) never count each
other's bytes.

>>> import pets, numpy as np
>>> be = pets.backend("plain")
>>> with pets.measure() as m:
...     data = be.encrypt(np.ones(4)).to_bytes()
>>> m.bytes_serialized == len(data)
True
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = [
    "Measurement", "measure", "record_bytes", "record_extra", "record_received", "record_round",
    "record_serialized",
]

#: the measurements open in this context, outermost first
_ACTIVE: ContextVar[tuple[Measurement, ...]] = ContextVar("pets_measurements", default=())
_LOCK = threading.Lock()  # a block's worker threads may share its context's measurements


@dataclass
class Measurement:
    """Cost of one measured block; filled in when the block ends."""

    label: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_serialized: int = 0
    rounds: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.label or 'measured'}: {self.seconds:.3f} s wall, {self.cpu_seconds:.3f} s CPU, "
            f"peak +{self.peak_memory_bytes / 2**20:.1f} MiB, "
            f"{self.bytes_sent / 2**20:.2f} MiB sent, {self.bytes_received / 2**20:.2f} MiB "
            f"received, {self.rounds} rounds, "
            f"{self.bytes_serialized / 2**20:.2f} MiB serialised"
        )


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: fall back to the peak so far
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def record_bytes(count: int) -> None:
    """Count ``count`` bytes as sent to another party in every active measurement."""
    with _LOCK:
        for m in _ACTIVE.get():
            m.bytes_sent += count


def record_serialized(count: int) -> None:
    """Count ``count`` bytes as serialised in every active measurement."""
    with _LOCK:
        for m in _ACTIVE.get():
            m.bytes_serialized += count


def record_received(count: int) -> None:
    """Count ``count`` bytes as received from another party in every active measurement."""
    with _LOCK:
        for m in _ACTIVE.get():
            m.bytes_received += count


def record_extra(key: str, amount: float) -> None:
    """Add ``amount`` to ``extra[key]`` of every active measurement (e.g. offline bytes)."""
    with _LOCK:
        for m in _ACTIVE.get():
            m.extra[key] = m.extra.get(key, 0) + amount


def record_round(count: int = 1) -> None:
    """Count rounds (messages waited for) in every active measurement."""
    with _LOCK:
        for m in _ACTIVE.get():
            m.rounds += count


@contextmanager
def measure(label: str = "", *, sample_seconds: float = 0.005) -> Iterator[Measurement]:
    """Measure time, peak memory, bytes sent and received and rounds of the enclosed block."""
    result = Measurement(label=label)
    start_rss = _rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(sample_seconds):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    token = _ACTIVE.set((*_ACTIVE.get(), result))
    wall, cpu = time.perf_counter(), time.process_time()
    sampler.start()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - wall
        result.cpu_seconds = time.process_time() - cpu
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], _rss_bytes())
        result.peak_memory_bytes = peak[0] - start_rss
        _ACTIVE.reset(token)
