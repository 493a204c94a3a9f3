"""The baseline column: the same work in the clear.

Dot products, matmuls and model inference run on ``pets.backend("plain")`` (numpy,
the reference every backend is tested against), through the same
encrypt / compute / decrypt calls as the private columns, so the ratios measure the
privacy technique and not a change of code. Training runs torch SGD, what a team
without privacy technology would run. Bytes on the wire are the raw float64 arrays
a client would send to, and get back from, a server in the clear.
"""

from __future__ import annotations

import time
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
    guard,
    register,
)
from pets_benchmarks.matrix.timing import Clock, fill, repeat
from pets_benchmarks.matrix.workloads import (
    LINEAR,
    TRAINING,
    Workload,
    accuracy_of,
    load_net,
    train_classifier,
)

__all__ = ["Plaintext", "run_linear", "run_model", "test_set_note"]


def run_linear(be: Any, workload: Workload, clock: Clock, **encrypt: Any) -> np.ndarray:
    """``x @ W`` on backend ``be``: encrypt, multiply by the plain matrix, decrypt."""
    x = be.encrypt(workload.x, **encrypt)
    clock.lap("encrypt")
    y = x @ workload.weight
    clock.lap("compute")
    out = be.decrypt(y)
    clock.lap("decrypt")
    return np.asarray(out)


def run_model(model: Any, workload: Workload, clock: Clock, **encrypt: Any) -> np.ndarray:
    """A compiled model on the workload's samples: encrypt, evaluate, decrypt."""
    x = model.encrypt(workload.x, **encrypt)
    clock.lap("encrypt")
    y = model(x)
    clock.lap("compute")
    out = model.decrypt(y)
    clock.lap("decrypt")
    return np.asarray(out)


def test_set_note(workload: Workload, state: dict[str, np.ndarray]) -> str:
    """The accuracy of a model's weights on the workload's whole test set, in words."""
    accuracy = accuracy_of(workload.arch, state, workload.x_test, workload.y_test)
    return f"the model's accuracy on all {len(workload.y_test)} test samples: {accuracy:.3f}"


class Plaintext(Technique):
    key = "plaintext"
    label = "plaintext"
    privacy = "none: the data is in the clear"

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        be = pets.backend("plain")
        for workload in workloads:
            yield guard(self, workload, partial(self._one, be, workload, context))

    def _one(self, be: Any, workload: Workload, context: Context) -> Cell:
        config = context.config
        cell = self.cell(workload)
        if workload.kind == TRAINING:
            return self._train(workload, config, cell)
        start = time.perf_counter()
        if workload.kind == LINEAR:
            runs = repeat(lambda clock: run_linear(be, workload, clock), repeats=config.repeats,
                          budget=config.cell_seconds)
        else:
            model = pets.compile(load_net(workload.arch, workload.state), backend=be,
                                 example_input=workload.x_train)
            cell.setup_seconds = time.perf_counter() - start
            runs = repeat(lambda clock: run_model(model, workload, clock),
                          repeats=config.repeats, budget=config.cell_seconds)
        fill(cell, runs)
        outputs = np.asarray(runs.result)
        context.reference[workload.key] = outputs
        cell.wire_bytes = int(workload.x.nbytes + outputs.astype(np.float64).nbytes)
        if workload.arch:
            cell.notes = test_set_note(workload, workload.state)
        return compare_outputs(cell, workload, outputs, None)

    def _train(self, workload: Workload, config: MatrixConfig, cell: Cell) -> Cell:
        def train(clock: Clock) -> dict[str, np.ndarray]:
            return train_classifier(
                workload.arch, workload.x, workload.labels, epochs=config.train_epochs,
                seed=config.seed, optimizer="sgd", lr=config.train_lr,
                batch_size=config.train_batch, initial=workload.state, fit_order=True)

        runs = repeat(train, repeats=config.repeats, budget=config.cell_seconds)
        fill(cell, runs)
        cell.throughput = workload.rows * config.train_epochs / cell.seconds_median \
            if cell.seconds_median else None
        cell.accuracy = accuracy_of(workload.arch, runs.result, workload.x_test, workload.y_test)
        cell.notes = (f"torch SGD, lr {config.train_lr}, the batches of PrivateModel.fit with "
                      f"seed {config.seed} (the MPC cells' order); test accuracy on "
                      f"{len(workload.y_test)}")
        cell.wire_bytes = 0
        return cell


@register("plaintext")
def _make(config: MatrixConfig) -> list[Technique]:
    return [Plaintext()]
