"""The multi-party columns: CrypTen secret sharing between 2 and 3 real party processes.

Each party count is one ``pets.run_parties`` call (party processes plus a dealer
that makes the Beaver triples), running every workload of the column in turn, so
the processes start once. Party 0 holds the data (``encrypt(x, src=0)``) and
learns the outputs (``decrypt(t, to=0)``); the model weights are public, as on
the HE server, so both columns do the same work. Every party measures its own
bytes and rounds; a cell reports the largest party's, and each party's in
``details``. Training is one run of ``PrivateModel.fit`` on shared data, labels
and weights (not repeated: it changes the weights), its accuracy measured on the
revealed weights.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

import pets
from pets_benchmarks.matrix.cells import Cell
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.techniques.base import (
    Context,
    Technique,
    compare_outputs,
    failed,
    guard,
    missing_backend,
    register,
)
from pets_benchmarks.matrix.timing import Clock, Runs, fill, repeat
from pets_benchmarks.matrix.workloads import (
    LINEAR,
    TRAINING,
    Workload,
    accuracy_of,
    load_net,
    state_of,
)

__all__ = ["MPC"]

#: rows of the training data that calibrate a model's function intervals
_CALIBRATION_ROWS = 512


class MPC(Technique):
    """Secret sharing among ``parties`` processes (and a dealer) as one column."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.key = f"mpc-{parties}"
        self.label = f"MPC {parties} parties"
        self.privacy = (f"additive secret shares among {parties} parties and a dealer (TTP) "
                        "for triples; honest-but-curious, no two may collude; weights public")

    def missing(self) -> str | None:
        return missing_backend("mpc")

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        config = context.config
        context.say(f"{self.label}: starting {self.parties} party processes and a dealer "
                    f"for {len(workloads)} workload(s)")
        jobs = [_job(w, config) for w in workloads]
        launched = time.time()
        try:
            results = pets.run_parties(
                _party, parties=self.parties, timeout=config.mpc_timeout,
                args=(jobs, config.repeats, config.cell_seconds, launched))
        except Exception as exc:  # the whole column failed (a party died, a port...)
            for workload in workloads:
                yield failed(self, workload, exc)
            return
        for index, workload in enumerate(workloads):
            parts = [party[index] for party in results]
            yield guard(self, workload, partial(self._cell, workload, parts, context))

    def _cell(self, workload: Workload, parts: list[dict[str, Any]], context: Context) -> Cell:
        first = parts[0]
        if "error" in first:
            cell = self.cell(workload, status="failed", reason=first["error"])
            return cell
        runs = Runs(seconds=first["seconds"], measurements=first["measurements"],
                    laps=first["laps"], result=first["outputs"])
        cell = fill(self.cell(workload, setup_seconds=first["setup"]), runs)
        cell.wire_bytes = max(p["measurements"][-1].bytes_sent for p in parts)
        cell.rounds = max(p["measurements"][-1].rounds for p in parts)
        cell.peak_memory_bytes = max(max(m.peak_memory_bytes for m in p["measurements"])
                                     for p in parts)
        cell.details = {"per_party": [
            {"party": rank, "bytes_sent": p["measurements"][-1].bytes_sent,
             "rounds": p["measurements"][-1].rounds,
             "offline_bytes": p["measurements"][-1].extra.get("offline_bytes", 0)}
            for rank, p in enumerate(parts)], "process_start_seconds": first["started"]}
        if workload.kind == TRAINING:
            config = context.config
            cell.accuracy = first["accuracy"]
            if cell.seconds_median:
                cell.throughput = workload.rows * config.train_epochs / cell.seconds_median
            cell.notes = (f"PrivateModel.fit (SGD, lr {config.train_lr}) on shared data, labels "
                          f"and weights, {first['steps']} steps, 1 run; sharing the data "
                          "is set-up")
            return cell
        cell.notes = f"party processes started in {first['started']:.1f} s (not timed)"
        return compare_outputs(cell, workload, first["outputs"],
                               context.reference.get(workload.key))


def _job(workload: Workload, config: MatrixConfig) -> dict[str, Any]:
    """What the party processes need of a workload: plain arrays only."""
    job = {"key": workload.key, "kind": workload.kind, "arch": workload.arch,
           "x": workload.x, "labels": workload.labels, "weight": workload.weight,
           "state": workload.state}
    if workload.x_train is not None:
        job["calibration"] = workload.x_train[:_CALIBRATION_ROWS]
    if workload.kind == TRAINING:
        job.update(x_test=workload.x_test, y_test=workload.y_test, epochs=config.train_epochs,
                   lr=config.train_lr, batch=config.train_batch, seed=config.seed)
    return job


def _party(party: Any, jobs: list[dict[str, Any]], repeats: int, budget: float,
           launched: float) -> list[dict[str, Any]]:
    """Runs in every party process: each job in turn, the same choices on every party."""
    import torch

    started = time.time() - launched
    torch.set_num_threads(1)  # as in the parent: tiny models, one thread per process
    results = []
    for job in jobs:
        try:
            result = _run_job(party, job, repeats, budget)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, pets.PetsError):
                text += "\n" + "".join(traceback.format_exception(exc))
            result = {"error": text}
        result["started"] = started
        results.append(result)
    return results


def _run_job(party: Any, job: dict[str, Any], repeats: int, budget: float) -> dict[str, Any]:
    be, rank = party.backend, party.rank
    mine = rank == 0

    def agree(choice: bool) -> bool:
        return bool(be.share_public(choice, src=0))

    start = time.perf_counter()
    if job["kind"] == TRAINING:
        return _train(be, job, mine, start)
    if job["kind"] == LINEAR:
        def once(clock: Clock) -> Any:
            x = be.encrypt(job["x"] if mine else None, src=0)
            clock.lap("encrypt")
            y = x @ job["weight"]
            clock.lap("compute")
            out = be.decrypt(y, to=0)
            clock.lap("decrypt")
            return out
    else:
        model = pets.compile(load_net(job["arch"], job["state"]), backend=be,
                             example_input=job["calibration"])

        def once(clock: Clock) -> Any:
            x = model.encrypt(job["x"] if mine else None, src=0)
            clock.lap("encrypt")
            y = model(x)
            clock.lap("compute")
            out = model.decrypt(y, to=0)
            clock.lap("decrypt")
            return out

    setup = time.perf_counter() - start
    runs = repeat(once, repeats=repeats, budget=budget, agree=agree)
    return {"seconds": runs.seconds, "measurements": runs.measurements, "laps": runs.laps,
            "outputs": None if runs.result is None else np.asarray(runs.result),
            "setup": setup}


def _train(be: Any, job: dict[str, Any], mine: bool, start: float) -> dict[str, Any]:
    import torch

    model = pets.compile(load_net(job["arch"], job["state"]), backend=be,
                         example_input=torch.zeros(2, job["x"].shape[1]))
    onehot = np.eye(10)[job["labels"]]
    x = be.encrypt(job["x"] if mine else None, src=0)
    y = be.encrypt(onehot if mine else None, src=0)
    setup = time.perf_counter() - start
    clock = Clock()
    with pets.measure() as cost:
        history = model.fit(x, y, epochs=job["epochs"], lr=job["lr"], batch_size=job["batch"],
                            seed=job["seed"])
    clock.lap("train")
    trained = model.to_torch()
    accuracy = accuracy_of(job["arch"], state_of(trained), job["x_test"], job["y_test"])
    return {"seconds": [cost.seconds], "measurements": [cost], "laps": [clock.laps],
            "outputs": None, "setup": setup, "accuracy": accuracy, "steps": history.steps}


@register("mpc")
def _make(config: MatrixConfig) -> list[Technique]:
    return [MPC(parties) for parties in config.mpc_parties]
