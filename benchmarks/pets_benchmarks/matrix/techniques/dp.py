"""The differential-privacy columns: two different places for the noise, two columns.

``dp-output`` (*output perturbation*, on dot products and matmuls): the plaintext
result plus Laplace noise (``pets.dp.laplace``) for epsilon-DP when one input value
moves within [0, 1] (L1 sensitivity: the largest row sum of ``|W|``). What it
protects: the inputs behind a released result.

``dp-sgd`` (*algorithm perturbation*, on the models):

* model inference: the same model trained by DP-SGD (``pets.dp.make_private``,
  Opacus; SGD at step :data:`TWIN_LR`) at ``(epsilon, delta)``, run in the clear;
  the DP training is set-up, its cost is the training row's. What it protects: the
  training records, against whoever queries the model (not the query itself);
* training: DP-SGD at each epsilon of the configuration, with the plaintext
  row's model, data, epochs, batch size and step size (clipping at norm 1).

Both belong to the ``dp`` family (``--skip dp`` leaves both out).
"""

from __future__ import annotations

import statistics
import time
import warnings
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
    missing_module,
    register,
)
from pets_benchmarks.matrix.techniques.plaintext import run_model, test_set_note
from pets_benchmarks.matrix.timing import Clock, fill, repeat
from pets_benchmarks.matrix.workloads import (
    INFERENCE,
    LINEAR,
    TRAINING,
    Workload,
    accuracy_of,
    load_net,
    train_classifier,
)

__all__ = ["DPSGD", "DifferentialPrivacy", "OutputNoise"]

#: per-example gradient clipping norm of every DP-SGD run
CLIP = 1.0
#: the DP twins of the inference models train by SGD at this step size (DP-SGD does
#: better with SGD and a large step than with the plaintext models' Adam)
TWIN_LR = 0.5


def dp_sgd(epsilon: float, delta: float, epochs: int, trainings: list[Any],
           calibrations: list[float] | None = None) -> Any:
    """A ``private`` hook for :func:`train_classifier`: DP-SGD at ``(epsilon, delta)``;
    the ``pets.dp.PrivateTraining`` is appended to ``trainings`` (to read epsilon spent),
    and the seconds ``make_private`` took (calibrating the noise) to ``calibrations``."""

    def wrap(net: Any, optimizer: Any, loader: Any) -> tuple[Any, Any, Any]:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pets.dp.InsecureRNGWarning)
            training = pets.dp.make_private(
                module=net, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon,
                target_delta=delta, epochs=epochs, max_grad_norm=CLIP, accountant="rdp")
        trainings.append(training)
        if calibrations is not None:
            calibrations.append(time.perf_counter() - start)
        return training.module, training.optimizer, training.data_loader

    return wrap


def spent(trainings: list[Any], delta: float) -> float | None:
    """Epsilon spent by the last DP-SGD run (``None`` if none ran)."""
    return float(trainings[-1].epsilon(delta)) if trainings else None


class DifferentialPrivacy(Technique):
    """What both DP columns share: the engines they need and the runs themselves."""

    #: the workload kinds this column runs; the others get :attr:`elsewhere` as reason
    kinds: tuple[str, ...] = ()
    elsewhere = ""

    def missing(self) -> str | None:
        return missing_module("opacus", "dp") or missing_module("opendp", "dp")

    def reason(self, workload: Workload, config: MatrixConfig) -> str | None:
        return None if workload.kind in self.kinds else self.elsewhere

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        config = context.config
        for workload in workloads:
            if workload.kind == TRAINING:
                for epsilon in config.dp_epsilons:
                    yield guard(self, workload, partial(self._train, workload, config, epsilon),
                                setting=f"eps={epsilon:g}")
            elif workload.kind == LINEAR:
                yield guard(self, workload, partial(self._release, workload, context))
            else:
                yield guard(self, workload, partial(self._infer, workload, context))

    def _privacy(self, epsilon: float, delta: float = 0.0) -> str:
        return f"(epsilon={epsilon:g}, delta={delta:g})-DP" if delta else f"epsilon={epsilon:g}-DP"

    def _release(self, workload: Workload, context: Context) -> Cell:
        config = context.config
        epsilon = config.dp_epsilon
        be = pets.backend("plain")

        def once(clock: Clock) -> np.ndarray:
            exact = be.decrypt(be.encrypt(workload.x) @ workload.weight)
            clock.lap("compute")
            noisy = pets.dp.laplace(exact, epsilon=epsilon, sensitivity=workload.sensitivity)
            clock.lap("noise")
            return np.asarray(noisy)

        runs = repeat(once, repeats=config.repeats, budget=config.cell_seconds)
        cell = fill(self.cell(workload, epsilon=epsilon, setting=f"eps={epsilon:g}",
                              privacy=f"output perturbation, {self._privacy(epsilon)}"), runs)
        cell.wire_bytes = int(workload.x.nbytes + np.asarray(runs.result).nbytes)
        cell.notes = (f"Laplace noise of scale {workload.sensitivity / epsilon:.3g} "
                      f"(L1 sensitivity {workload.sensitivity:.3g}) on each released value")
        return compare_outputs(cell, workload, runs.result, context.reference.get(workload.key))

    def _infer(self, workload: Workload, context: Context) -> Cell:
        config = context.config
        epsilon, delta = config.dp_epsilon, config.dp_delta
        start = time.perf_counter()
        trainings: list[Any] = []
        state = train_classifier(workload.arch, workload.x_train, workload.y_train,
                                 epochs=config.model_epochs, seed=config.seed, optimizer="sgd",
                                 lr=TWIN_LR,
                                 private=dp_sgd(epsilon, delta, config.model_epochs, trainings))
        be = pets.backend("plain")
        model = pets.compile(load_net(workload.arch, state), backend=be,
                             example_input=workload.x_train)
        setup = time.perf_counter() - start
        runs = repeat(lambda clock: run_model(model, workload, clock), repeats=config.repeats,
                      budget=config.cell_seconds)
        cell = fill(self.cell(workload, setting=f"eps={epsilon:g}", setup_seconds=setup,
                              epsilon=spent(trainings, delta),
                              privacy=f"model trained by DP-SGD, {self._privacy(epsilon, delta)}"),
                    runs)
        outputs = np.asarray(runs.result)
        cell.wire_bytes = int(workload.x.nbytes + outputs.nbytes)
        cell.notes = (f"DP-SGD training (SGD lr {TWIN_LR:g}, {config.model_epochs} epochs, clip "
                      f"{CLIP:g}) is set-up; {test_set_note(workload, state)}")
        return compare_outputs(cell, workload, outputs, context.reference.get(workload.key))

    def _train(self, workload: Workload, config: MatrixConfig, epsilon: float) -> Cell:
        delta = config.dp_delta
        trainings: list[Any] = []
        calibrations: list[float] = []

        def train(clock: Clock) -> dict[str, np.ndarray]:
            return train_classifier(
                workload.arch, workload.x, workload.labels, epochs=config.train_epochs,
                seed=config.seed, optimizer="sgd", lr=config.train_lr,
                batch_size=config.train_batch, initial=workload.state,
                private=dp_sgd(epsilon, delta, config.train_epochs, trainings, calibrations))

        runs = repeat(train, repeats=config.repeats, budget=config.cell_seconds, warmup=False)
        # calibrating the noise (make_private) is set-up, as making keys is for HE
        runs.seconds = [s - c for s, c in zip(runs.seconds, calibrations, strict=True)]
        used = spent(trainings, delta)
        cell = fill(self.cell(workload, setting=f"eps={epsilon:g}", epsilon=used,
                              setup_seconds=statistics.median(calibrations),
                              privacy=f"DP-SGD, {self._privacy(epsilon, delta)}"), runs)
        if cell.seconds_median:
            cell.throughput = workload.rows * config.train_epochs / cell.seconds_median
        cell.accuracy = accuracy_of(workload.arch, runs.result, workload.x_test, workload.y_test)
        cell.wire_bytes = 0
        cell.notes = f"Opacus DP-SGD, clip {CLIP:g}, Poisson batches of {config.train_batch} " \
                     f"expected, RDP accountant; calibrating the noise (make_private) is set-up"
        return cell


class OutputNoise(DifferentialPrivacy):
    key = "dp-output"
    label = "DP output noise"
    privacy = "output perturbation: Laplace noise on each released value"
    kinds = (LINEAR,)
    elsewhere = ("output perturbation is measured on the released dot products and matmuls; "
                 "a model's training records are protected by DP-SGD (the dp-sgd column)")


class DPSGD(DifferentialPrivacy):
    key = "dp-sgd"
    label = "DP-SGD"
    privacy = ("algorithm perturbation: the model is trained by DP-SGD; inference runs that "
               "model in the clear")
    kinds = (INFERENCE, TRAINING)
    elsewhere = ("DP-SGD trains models; noise on a released result is the dp-output "
                 "column")


@register("dp")
def _make(config: MatrixConfig) -> list[Technique]:
    return [OutputNoise(), DPSGD()]
