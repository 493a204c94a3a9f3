"""The matrix as tables of text: a workload x technique summary, and one row per cell.

Shared by the terminal (rich) and ``report.md``. In the summary, plaintext shows its
time; every other cell its overhead against that time (same run) and what it kept:
accuracy for models, the largest error for dot products and matmuls. MPC cells add
their overhead over a LAN and a WAN link (:mod:`pets_benchmarks.linked`: the run's
rounds and bytes over a 0.2 ms / 1 Gbit/s and a 40 ms / 100 Mbit/s link). Cells that did
not run show ``n/a`` or ``failed`` with a numbered reason.

>>> from pets_benchmarks.matrix.cells import Cell
>>> seconds(0.00042), size(3 * 2**20), ratio(1234.5)
('420 us', '3.0 MiB', '1,234x')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pets_benchmarks.matrix.cells import OK, SKIPPED, Cell

__all__ = ["DETAIL_COLUMNS", "detail_rows", "linked_seconds", "ratio", "seconds", "size",
           "summary"]


def seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.3g}x"


def number(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _kept(cell: Cell) -> str:
    if cell.accuracy is not None:
        return f"acc {cell.accuracy:.3f}"
    if cell.error is not None:
        return f"err {cell.error:.1e}"
    return ""


def linked_seconds(cell: Cell, profile: str) -> float | None:
    """An MPC cell's time over the link ``profile`` (:mod:`pets_benchmarks.linked`: its
    rounds and the busiest party's bytes added to the time measured on one machine)."""
    from pets_benchmarks.linked import over_link

    if (not cell.technique.startswith("mpc") or cell.seconds_median is None
            or cell.rounds is None or cell.wire_bytes is None):
        return None
    return over_link(cell.seconds_median, rounds=cell.rounds, sent_bytes=cell.wire_bytes,
                     profile=profile)


def _linked(cell: Cell) -> str:
    """`` (LAN 70x, WAN 2,100x)`` for an MPC cell, else nothing."""
    wan = linked_seconds(cell, "wan")
    if wan is None or not cell.overhead or not cell.seconds_median:
        return ""
    plain = cell.seconds_median / cell.overhead
    lan = linked_seconds(cell, "lan") or 0.0
    return f" (LAN {ratio(lan / plain)}, WAN {ratio(wan / plain)})"


def _text(cell: Cell, notes: list[str]) -> str:
    label = f"{cell.setting}: " if cell.setting else ""
    if cell.status != OK:
        if cell.reason not in notes:
            notes.append(cell.reason)
        word = "n/a" if cell.status == SKIPPED else "failed"
        return f"{label}{word} [{notes.index(cell.reason) + 1}]"
    cost = seconds(cell.seconds_median) if cell.technique == "plaintext" else ratio(cell.overhead)
    return f"{label}{cost}{_linked(cell)} {_kept(cell)}".strip()


def summary(cells: Sequence[Cell], workloads: dict[str, str],
            techniques: Sequence[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, rows, reasons)``: one row per workload, one column per technique; a cell
    with several settings lists each on its own line."""
    notes: list[str] = []
    header = ["workload", *techniques]
    rows = []
    for workload in workloads:
        row = [workload]
        for technique in techniques:
            mine = [c for c in cells if c.workload == workload and c.technique == technique]
            row.append("\n".join(_text(c, notes) for c in mine) or "-")
        rows.append(row)
    return header, rows, notes


DETAIL_COLUMNS = ["workload", "technique", "setting", "status", "time (median)", "min - max",
                  "runs", "x plain", "LAN", "WAN", "samples/s", "peak mem", "wire",
                  "x plain bytes", "rounds", "keys", "accuracy", "agree", "max err", "epsilon"]


def detail_rows(cells: Sequence[Cell]) -> list[list[str]]:
    """One row per cell that ran, with every measure (:data:`DETAIL_COLUMNS`)."""
    rows = []
    for c in cells:
        if c.status != OK:
            continue
        rows.append([
            c.workload, c.technique, c.setting, c.status, seconds(c.seconds_median),
            f"{seconds(c.seconds_min)} - {seconds(c.seconds_max)}", str(c.repeats),
            ratio(c.overhead), seconds(linked_seconds(c, "lan")),
            seconds(linked_seconds(c, "wan")), number(c.throughput, ",.4g"),
            size(c.peak_memory_bytes),
            size(c.wire_bytes), ratio(c.wire_ratio), number(c.rounds, "d") if c.rounds is not
            None else "-", size(c.key_bytes), number(c.accuracy, ".3f"),
            number(c.agreement, ".3f"), number(c.error, ".1e"), number(c.epsilon, ".3g"),
        ])
    return rows
