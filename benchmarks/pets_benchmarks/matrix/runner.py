"""Run the matrix: every technique on every workload, one run, ratios against plaintext.

Workloads are built once (data, plaintext-trained models); then each technique
runs its column, plaintext first (its outputs are the reference every other
cell is compared to). A technique that is not installed, does not apply to a
workload or is left out by the configuration gives cells saying why; one that
raises gives failed cells carrying the error; the run goes on either way.
Progress goes to a ``rich`` progress bar when asked for, and to the
``pets_benchmarks.matrix`` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pets_benchmarks.machine import machine_details
from pets_benchmarks.matrix.cells import SKIPPED, Cell, add_ratios
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.techniques import make_techniques
from pets_benchmarks.matrix.techniques.base import Context, Technique, failed
from pets_benchmarks.matrix.workloads import TRAINING, Workload, build, plan

__all__ = ["MatrixResult", "run_matrix"]

_log = logging.getLogger("pets_benchmarks.matrix")


@dataclass
class MatrixResult:
    """Every cell of one run, with the configuration and the machine it ran on."""

    config: MatrixConfig
    cells: list[Cell]
    machine: dict[str, Any] = field(default_factory=dict)
    workloads: dict[str, str] = field(default_factory=dict)
    techniques: dict[str, str] = field(default_factory=dict)
    started: str = ""
    seconds: float = 0.0
    setup_seconds: float = 0.0

    def cell(self, workload: str, technique: str, setting: str = "") -> Cell:
        """The cell of ``technique`` (and ``setting``) on ``workload``."""
        for c in self.cells:
            if (c.workload, c.technique, c.setting) == (workload, technique, setting):
                return c
        raise KeyError(f"no cell {technique}[{setting}] on {workload}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatrixResult:
        """A run back from its ``results.json`` (:meth:`to_dict`)."""
        config: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.get("config", {}).items()}
        return cls(config=MatrixConfig(**config),
                   cells=[Cell.from_dict(c) for c in data["cells"]],
                   machine=data.get("machine", {}), workloads=data.get("workloads", {}),
                   techniques=data.get("techniques", {}), started=data.get("started", ""),
                   seconds=data.get("seconds", 0.0), setup_seconds=data.get("setup_seconds", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started, "seconds": self.seconds,
            "setup_seconds": self.setup_seconds, "config": self.config.describe(),
            "machine": self.machine, "workloads": self.workloads,
            "techniques": self.techniques, "cells": [c.as_dict() for c in self.cells],
        }


def _expected(technique: Technique, workloads: list[Workload], config: MatrixConfig) -> int:
    """Cells a technique will give (DP-SGD: one per epsilon; federated: three modes)."""
    count = 0
    for w in workloads:
        if w.kind == TRAINING and technique.key == "dp-sgd":
            count += len(config.dp_epsilons)
        elif w.kind == TRAINING and technique.key == "federated":
            count += 3
        else:
            count += 1
    return count


@contextmanager
def _progress(show: bool, total: int) -> Iterator[tuple[Callable[[str], None],
                                                        Callable[[int], None]]]:
    """``(describe, advance)`` callbacks, drawn as a rich progress bar when ``show``."""
    if show:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            show = False
    if not show:
        yield (lambda text: _log.info(text)), (lambda n: None)
        return
    # the bar shows each step; the log gets them at DEBUG (libraries such as CrypTen
    # install root handlers that would print INFO lines through the bar)
    columns = (TextColumn("[bold]pets bench[/bold]"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("preparing", total=total)

        def describe(text: str) -> None:
            _log.debug(text)
            bar.update(task, description=text)

        yield describe, (lambda n: bar.advance(task, n))


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for the run: fastest for these small models, and the same for
    every column (party processes do the same); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _skip_reason(technique: Technique, config: MatrixConfig) -> str | None:
    if technique.key in config.skip or technique.family in config.skip:
        return f"left out by this configuration (skip={list(config.skip)})"
    return technique.missing()


def run_matrix(config: MatrixConfig | None = None, *, progress: bool = False) -> MatrixResult:
    """Run every technique on every workload of ``config`` (default: the full matrix)."""
    config = config or MatrixConfig.full()
    began, stamp = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %z")
    techniques = make_techniques(config)
    listed = plan(config)
    total = sum(_expected(t, listed, config) for t in techniques)
    cells: list[Cell] = []
    with _progress(progress, total) as (describe, advance), _one_thread():
        describe("preparing workloads (data, plaintext-trained models)")
        workloads = build(config)
        setup = time.perf_counter() - began
        context = Context(config, say=describe)
        for technique in techniques:
            column = _column(technique, workloads, context, describe, advance)
            cells.extend(column)
    add_ratios(cells)
    return MatrixResult(
        config=config, cells=cells, machine=machine_details(),
        workloads={w.key: w.title for w in workloads},
        techniques={t.key: f"{t.label} ({t.privacy})" if t.privacy else t.label
                    for t in techniques},
        started=stamp, seconds=time.perf_counter() - began, setup_seconds=setup)


def _column(technique: Technique, workloads: list[Workload], context: Context,
            describe: Callable[[str], None], advance: Callable[[int], None]) -> list[Cell]:
    config = context.config
    cells: list[Cell] = []
    why = _skip_reason(technique, config)
    runnable = []
    for workload in workloads:
        reason = why or technique.reason(workload, config)
        if reason:
            cells.append(technique.cell(workload, status=SKIPPED, reason=reason))
            advance(_expected(technique, [workload], config))
        else:
            runnable.append(workload)
    if not runnable:
        return cells
    describe(f"{technique.label}: {len(runnable)} workload(s)")
    done: set[str] = set()
    try:
        for cell in technique.run(runnable, context):
            cells.append(cell)
            done.add(cell.workload)
            advance(1)
            describe(f"{technique.label}: {cell.workload} {cell.setting} {cell.status}".strip())
    except Exception as exc:  # the column stopped: its remaining cells carry the error
        for workload in runnable:
            if workload.key not in done:
                cells.append(failed(technique, workload, exc))
    return cells
