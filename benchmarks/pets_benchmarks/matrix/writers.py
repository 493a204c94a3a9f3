"""The files of a matrix run: ``results.json``, ``results.csv`` and ``report.md``.

``results.json`` holds everything (configuration, machine, every cell with its
phases and per-party figures); ``results.csv`` one row per cell with the flat
columns of :data:`~pets_benchmarks.matrix.cells.COLUMNS`; ``report.md`` the
machine, the summary matrix, the reasons cells did not run, every measure of
every cell, and the plots.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pets_benchmarks.matrix.cells import COLUMNS, OK
from pets_benchmarks.matrix.runner import MatrixResult
from pets_benchmarks.matrix.tables import DETAIL_COLUMNS, detail_rows, size, summary

__all__ = ["write_csv", "write_json", "write_markdown"]


def write_json(result: MatrixResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def write_csv(result: MatrixResult, path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for cell in result.cells:
            data = cell.as_dict()
            writer.writerow({k: "" if data[k] is None else data[k] for k in COLUMNS})
    return path


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def clean(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return lines


def machine_lines(machine: dict[str, Any]) -> list[str]:
    libraries = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    return [
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} logical cores "
        f"({machine.get('usable_cores')} usable), memory {size(machine.get('memory_bytes'))}",
        f"- OS: {machine.get('os')}, Python {machine.get('python')}",
        f"- Libraries: {libraries}",
    ]


def write_markdown(result: MatrixResult, path: Path, plots: Sequence[Path] = ()) -> Path:
    techniques = list(result.techniques)
    header, rows, reasons = summary(result.cells, result.workloads, techniques)
    ran = sum(c.status == OK for c in result.cells)
    lines = [
        "# pets bench: every technique on the same work",
        "",
        f"Preset `{result.config.name}`, started {result.started}, {result.seconds:.0f} s in "
        f"all ({result.setup_seconds:.0f} s preparing data and plaintext models); "
        f"{ran} of {len(result.cells)} cells ran.",
        "",
        "## Machine",
        "",
        *machine_lines(result.machine),
        "",
        "## The matrix",
        "",
        "Plaintext shows its median time; every other cell its overhead against that time "
        "(median over median, same run) and what it kept: test accuracy (`acc`) for models, "
        "the largest deviation from plaintext's output (`err`) for dot products and matmuls. "
        "MPC cells add their overhead over a LAN (0.2 ms, 1 Gbit/s) and a WAN (40 ms RTT, "
        "100 Mbit/s): the parties share one machine here, so the run's rounds and busiest "
        "party's bytes are charged to those links by pets.network's model. "
        "`n/a [k]` and `failed [k]` cells did not run for reason k below.",
        "",
        *_table(header, rows),
        "",
    ]
    if reasons:
        lines += ["Why some cells did not run:", ""]
        lines += [f"{i}. {reason}" for i, reason in enumerate(reasons, 1)]
        lines.append("")
    lines += ["## Techniques", ""]
    lines += [f"- `{key}`: {text}" for key, text in result.techniques.items()]
    lines += ["", "## Workloads", ""]
    lines += [f"- `{key}`: {text}" for key, text in result.workloads.items()]
    lines += ["", "## Every measure", "",
              "Time is one run of the work (median of the runs, min and max); `x plain` the "
              "overhead against the plaintext cell of the same workload; `wire` the bytes a "
              "party or client sends and receives for the work (MPC: the busiest party's "
              "online bytes; HE: input and output ciphertexts); `keys` the public key set "
              "(HE, one-off); `agree` the share of predictions equal to plaintext's.", ""]
    lines += _table(DETAIL_COLUMNS, detail_rows(result.cells))
    noted = [c for c in result.cells if c.status == OK and c.notes]
    if noted:
        lines += ["", "Notes:", ""]
        lines += [f"- `{c.workload}` / `{c.key}`: {c.notes}" for c in noted]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Configuration", "", "```json",
              json.dumps(result.config.describe(), indent=2), "```", ""]
    path.write_text("\n".join(lines))
    return path
