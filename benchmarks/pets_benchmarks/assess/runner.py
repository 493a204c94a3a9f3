"""Run the assessment: train the models, run each protected technique once, fill every cell.

Steps, each reported to ``progress(step, done, total)`` and logged:

1. the workload and the models: the plaintext MLP and one DP-SGD MLP per epsilon;
2. the protected runs: HE (encrypted inference), MPC (party processes), FL + DP + HE;
3. the stages' cells: collection, training, inference, release.

A step that raises does not end the run: a protected run's error lands in the cells
that need it (*failed*, with the message), a stage's in one *failed* cell per threat.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets_benchmarks.assess.cells import Cell, Cost, json_safe
from pets_benchmarks.assess.config import AssessConfig
from pets_benchmarks.assess.context import Context
from pets_benchmarks.assess.workload import (
    Workload,
    accuracy,
    evaluator,
    one_thread,
    stopwatch,
    train_dp,
    train_plain,
)
from pets_benchmarks.machine import machine_details

__all__ = ["STAGES", "Matrix", "run_assessment"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: stage -> its threats, in the matrix's row order
STAGES: dict[str, tuple[str, ...]] = {
    "collection": ("eavesdropping server",),
    "training": ("reconstruction",),
    "inference": ("eavesdropping server", "model inversion"),
    "release": ("membership", "model inversion", "property"),
}


@dataclass
class Matrix:
    """The assessment: every cell, the configuration and the machine it ran on."""

    config: AssessConfig
    cells: list[Cell]
    machine: dict[str, Any]
    seconds: float
    started: str
    notes: list[str] = field(default_factory=list)

    @property
    def techniques(self) -> list[str]:
        return self.config.techniques

    def cell(self, stage: str, threat: str, technique: str) -> Cell:
        for cell in self.cells:
            if (cell.stage, cell.threat, cell.technique) == (stage, threat, technique):
                return cell
        raise KeyError(f"no cell ({stage}, {threat}, {technique})")

    def to_dict(self) -> dict[str, Any]:
        return json_safe({  # type: ignore[no-any-return]
            "format": "pets-assessment/1",
            "started": self.started, "seconds": self.seconds,
            "config": self.config.to_dict(), "machine": self.machine,
            "stages": {stage: list(threats) for stage, threats in STAGES.items()},
            "techniques": self.techniques, "notes": self.notes,
            "cells": [cell.to_dict() for cell in self.cells],
        })


def _prepare(config: AssessConfig) -> Context:
    workload = Workload.load(config)
    members, test = workload.rows(workload.members), workload.rows(workload.test)
    logger.info("training the plaintext model on %d members", len(members[1]))
    with stopwatch() as elapsed:
        plain = train_plain(*members, config=config, seed=config.seed)
    plain_accuracy = accuracy(plain, test)
    work = f"train the 64-{config.hidden}-10 MLP on {len(members[1])} members"
    ctx = Context(config, workload, evaluator(workload.rows(workload.attacker)), plain,
                  Cost(work=work, seconds=elapsed[0], plain_seconds=elapsed[0],
                       accuracy=plain_accuracy, plain_accuracy=plain_accuracy,
                       details={"optimizer": f"Adam, {config.plain_epochs} epochs"}))
    for epsilon in config.epsilons:
        logger.info("training the DP-SGD model at epsilon %g", epsilon)
        with stopwatch() as private:
            trained = train_dp(*members, epsilon=epsilon, config=config, seed=config.seed)
        ctx.dp[epsilon] = trained
        ctx.dp_cost[epsilon] = Cost(
            work=work, seconds=private[0], plain_seconds=elapsed[0],
            accuracy=accuracy(trained.model, test), plain_accuracy=plain_accuracy,
            details={"epsilon spent": trained.epsilon, "delta": config.delta,
                     "noise multiplier": trained.noise_multiplier,
                     "clip norm": config.clip_norm,
                     "optimizer": f"DP-SGD (Opacus), {config.dp_epochs} epochs, "
                                  f"batch {config.dp_batch}, lr {config.dp_lr:g}"})
    return ctx


def _protected_runs(ctx: Context, step: Callable[[str], None]) -> None:
    config, w = ctx.config, ctx.workload
    if config.he:
        step("HE: encrypted inference")
        ctx.he = _attempt("HE run", lambda: _he(ctx))
    if config.mpc:
        step("MPC: party processes")
        ctx.mpc = _attempt("MPC run", lambda: _mpc(ctx))
    if config.federated:
        step("FL + DP + HE: federated rounds")
        from pets_benchmarks.assess.fl_run import run_federated

        ctx.fl = _attempt("federated run", lambda: run_federated(w, config))


def _he(ctx: Context) -> Any:
    from pets_benchmarks.assess.he_run import run_he

    w = ctx.workload
    queries = w.rows(w.test[: ctx.config.he_queries])
    return run_he(ctx.plain, w.x[w.members], queries, w.x[w.collected],
                  record_labels=w.y[w.collected], classifier=ctx.evaluator)


def _mpc(ctx: Context) -> Any:
    from pets_benchmarks.assess.mpc_run import run_mpc

    w, config = ctx.workload, ctx.config
    x, y = w.rows(w.members)
    queries, labels = w.rows(w.test[: config.mpc_queries])
    return run_mpc(
        halves=[h.astype(np.float64) for h in np.array_split(x, 2)],
        labels=list(np.array_split(y, 2)), queries=queries.astype(np.float64),
        query_labels=labels, served=(config.hidden, ctx.plain.state_dict()),
        hidden=config.hidden, classifier=ctx.evaluator,
        settings={"epochs": config.mpc_epochs, "lr": config.mpc_lr,
                  "batch_size": config.mpc_batch, "seed": config.seed})


def _attempt(what: str, action: Callable[[], Any]) -> Any:
    """``action()``, or the exception it raised (logged with its traceback)."""
    try:
        return action()
    except Exception as exc:
        logger.warning("%s failed: %s: %s\n%s", what, type(exc).__name__, exc,
                       traceback.format_exc())
        return exc


def _stage_cells(stage: str, ctx: Context) -> list[Cell]:
    from pets_benchmarks.assess.collection import collection_cells
    from pets_benchmarks.assess.inference import inference_cells
    from pets_benchmarks.assess.release import release_cells
    from pets_benchmarks.assess.training import training_cells

    build = {"collection": collection_cells, "training": training_cells,
             "inference": inference_cells, "release": release_cells}[stage]
    result = _attempt(f"stage {stage}", lambda: build(ctx))
    if not isinstance(result, Exception):
        return list(result)
    return [Cell(stage, threat, technique, "failed",
                 note=f"the stage raised {type(result).__name__}: {result}")
            for threat in STAGES[stage] for technique in ctx.config.techniques]


def run_assessment(config: AssessConfig, *, progress: Progress | None = None) -> Matrix:
    """Fill the matrix for ``config`` (see the module docstring)."""
    machine = machine_details()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    protected = int(config.he) + int(config.mpc) + int(config.federated)
    total = 1 + protected + len(STAGES)
    done = [0]

    def step(name: str) -> None:
        logger.info("step %d of %d: %s", done[0] + 1, total, name)
        if progress is not None:
            progress(name, done[0], total)
        done[0] += 1

    with stopwatch() as elapsed, one_thread():
        step("data and models (plaintext, DP-SGD per epsilon)")
        ctx = _prepare(config)
        _protected_runs(ctx, step)
        cells: list[Cell] = []
        for stage in STAGES:
            step(f"{stage}: attacks")
            cells.extend(_stage_cells(stage, ctx))
    if progress is not None:
        progress("done", total, total)
    notes = [
        "DP-SGD noise comes from torch's generator (Opacus without torchcsprng): fine for "
        "measuring, not for a release (pets.dp warns InsecureRNGWarning).",
        "Timings are wall-clock on the machine below, in one process except the MPC parties; "
        "they are comparable only within this run.",
    ]
    return Matrix(config, _ordered(cells, config), machine, elapsed[0], started, notes)


def _ordered(cells: list[Cell], config: AssessConfig) -> list[Cell]:
    rows = [(stage, threat) for stage, threats in STAGES.items() for threat in threats]
    columns = config.techniques

    def key(cell: Cell) -> tuple[int, int]:
        row = rows.index((cell.stage, cell.threat)) if (cell.stage, cell.threat) in rows else 99
        column = columns.index(cell.technique) if cell.technique in columns else 99
        return row, column

    return sorted(cells, key=key)
