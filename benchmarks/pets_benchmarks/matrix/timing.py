"""Repeated, measured runs of one cell: median, min and max, within a time allowance.

Each run happens inside ``pets.measure()`` (wall time, peak memory, bytes sent,
rounds) and may mark its phases on a :class:`Clock`. A first, untimed run warms
caches (imports, encoded weights); then runs are measured: ``repeats`` of them, more
for fast cells (for a tenth of the allowance), fewer once they have used it all.
Under MPC every party must make the same choices: ``agree`` hands each decision to
party 0's.

>>> import time
>>> runs = repeat(lambda clock: time.sleep(0.01), repeats=3, budget=0.2)
>>> min(runs.seconds) >= 0.01, len(runs.seconds) <= 3   # a tenth of 0.2 s: 3 runs
(True, True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pets
from pets_benchmarks.matrix.cells import Cell

__all__ = ["FAST_RUNS", "Clock", "Runs", "fill", "repeat"]


class Clock:
    """Marks the phases of one run: ``clock.lap("encrypt")`` ends the phase so named."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


@dataclass
class Runs:
    """The measured runs of one cell (warm-up excluded) and the last result."""

    seconds: list[float] = field(default_factory=list)
    measurements: list[pets.Measurement] = field(default_factory=list)
    laps: list[dict[str, float]] = field(default_factory=list)
    result: Any = None

    def phases(self) -> dict[str, float]:
        names = self.laps[0] if self.laps else {}
        return {name: statistics.median(lap.get(name, 0.0) for lap in self.laps)
                for name in names}


def _once(fn: Callable[[Clock], Any]) -> tuple[Any, pets.Measurement, Clock]:
    clock = Clock()
    with pets.measure() as cost:
        result = fn(clock)
    return result, cost, clock


#: fast cells run more than ``repeats`` times, until they have used a tenth of their
#: allowance or made this many runs, so that their median spans more than a passing
#: hiccup of a busy machine
FAST_RUNS = 1000


def repeat(fn: Callable[[Clock], Any], *, repeats: int, budget: float, warmup: bool = True,
           agree: Callable[[bool], bool] | None = None) -> Runs:
    """Run ``fn`` once untimed (``warmup``), then measured: at least ``repeats`` times and
    until the runs have used a tenth of ``budget`` seconds (at most :data:`FAST_RUNS`),
    but no more once ``budget`` is used up (always at least once)."""
    decide = agree or (lambda choice: choice)
    runs = Runs()
    if warmup:
        fn(Clock())
    spent, most = 0.0, max(1, repeats, FAST_RUNS)
    for count in range(1, most + 1):
        result, cost, clock = _once(fn)
        spent += cost.seconds
        runs.seconds.append(cost.seconds)
        runs.measurements.append(cost)
        runs.laps.append(clock.laps)
        runs.result = result
        enough = spent >= budget or (count >= repeats and spent >= budget / 10)
        if decide(enough or count >= most):
            break
    return runs


def fill(cell: Cell, runs: Runs) -> Cell:
    """Copy the timing, memory and traffic of ``runs`` into ``cell``."""
    seconds = runs.seconds
    cell.repeats = len(seconds)
    cell.seconds_median = statistics.median(seconds)
    cell.seconds_min, cell.seconds_max = min(seconds), max(seconds)
    if cell.rows and cell.seconds_median > 0:
        cell.throughput = cell.rows / cell.seconds_median
    cell.peak_memory_bytes = max(m.peak_memory_bytes for m in runs.measurements)
    cell.phases = runs.phases()
    last = runs.measurements[-1]
    if last.bytes_sent or last.rounds:
        cell.wire_bytes, cell.rounds = last.bytes_sent, last.rounds
    if "offline_bytes" in last.extra:
        cell.offline_bytes = int(last.extra["offline_bytes"])
    return cell
