"""The federated column: the digits MLP trained by Flower clients, in three modes.

One call of ``pets_protocols.federated.compare`` (a Flower simulation: the same clients,
model and rounds for every mode) gives a cell per mode: FedAvg in the clear, DP
(each client clips its update and adds its share of the noise) and DP with CKKS-
encrypted aggregation (the server sees no update). The clients pass over the data
as many times as the training row's ``train_epochs`` (one local epoch per round).
Federated learning trains models; it has no cell on the dot products or the
inference workloads.

The protocol uses its own numpy copy of the model (64-32-10, ReLU) and its own
split of the digits (pixels in [-1, 1], 25 % held out, dealt to the clients at
random), so its accuracy is on its own test set; its seconds are the median
round times the rounds; its bytes are one client's, down and up, over all rounds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

from pets_benchmarks.matrix.cells import Cell
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.techniques.base import (
    Context,
    Technique,
    failed,
    missing_module,
    register,
)
from pets_benchmarks.matrix.workloads import TRAINING, Workload

__all__ = ["Federated"]

#: ``compare``'s settings -> (this column's setting, the privacy it gives)
MODES = {
    "FedAvg (Flower's own)": ("FedAvg", "raw data stays with each client; the server sees "
                              "every update"),
    "DP (noise shares, in the clear)": ("DP", "client-level DP on each update; the server "
                                        "sees noised updates"),
    "DP + encrypted aggregation": ("DP+HE", "client-level DP, updates CKKS-encrypted: the "
                                   "server sees only their noised sum"),
}


class Federated(Technique):
    key = "federated"
    label = "federated"
    privacy = ("the data stays with each client; updates travel (noised under DP, "
               "encrypted under DP+HE)")

    def missing(self) -> str | None:
        return missing_module("flwr", "fl")

    def reason(self, workload: Workload, config: MatrixConfig) -> str | None:
        if workload.kind != TRAINING:
            return ("federated learning trains a model where the data lives; it has no "
                    "private inference or arithmetic to run (see the training row)")
        return None

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        for workload in workloads:
            try:
                yield from self._train(workload, context)
            except Exception as exc:
                yield failed(self, workload, exc)

    def _train(self, workload: Workload, context: Context) -> Iterator[Cell]:
        from pets_protocols.federated.compare import compare
        from pets_protocols.federated.data import load_digits

        config = context.config
        rounds, local_epochs = config.train_epochs, 1
        context.say(f"federated: Flower simulation, {config.federated_clients} clients, "
                    f"{rounds} round(s) of {local_epochs} local epoch(s), three modes")
        flower = logging.getLogger("flwr")
        level = flower.level
        flower.setLevel(logging.ERROR)  # Flower logs every round, and a deprecation notice
        try:
            with warnings.catch_warnings():  # Ray's notice about GPU variables, on CPU
                warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
                rows = compare(clients=config.federated_clients, rounds=rounds,
                               epsilon=config.federated_epsilon, splits=("iid",),
                               local_epochs=local_epochs, lr=0.1)
        finally:
            flower.setLevel(level)
        pooled = next((r for r in rows if r.setting.startswith("pooled")), None)
        for row in rows:
            if row.setting not in MODES:
                continue
            setting, privacy = MODES[row.setting]
            yield self._cell(workload, row, setting, privacy, rounds, local_epochs, pooled,
                             len(load_digits().x_train))

    def _cell(self, workload: Workload, row: Any, setting: str, privacy: str, rounds: int,
              local_epochs: int, pooled: Any, rows: int) -> Cell:
        seconds = row.seconds_per_round * rounds
        wire = None if row.bytes_up is None else int((row.bytes_up + row.bytes_down) * rounds)
        if row.epsilon is not None:
            privacy += f", (epsilon={row.epsilon:g}, delta=1e-5) per client"
        notes = (f"{row.clients} clients, {rounds} round(s) x {local_epochs} local epoch(s), "
                 "time = median round x rounds"
                 + ("" if rounds >= 3 else " (under 3 rounds the median includes the first "
                    "round, which starts the simulation)") + f"; {row.note}")
        if pooled is not None:
            notes += (f"; the protocol's pooled twin: accuracy {pooled.accuracy:.3f}, "
                      f"{pooled.seconds_per_round * rounds:.3g} s")
        return self.cell(
            workload, setting=setting, rows=rows, repeats=1, seconds_median=seconds,
            throughput=(rows * rounds * local_epochs / seconds) if seconds else None,
            wire_bytes=wire, rounds=rounds, accuracy=row.accuracy, epsilon=row.epsilon,
            privacy=privacy, notes=notes,
            details={"seconds_per_round": row.seconds_per_round, "bytes_up": row.bytes_up,
                     "bytes_down": row.bytes_down,
                     "epsilon_one_update": row.epsilon_one_update,
                     "protect_seconds": row.protect_seconds,
                     "aggregate_seconds": row.aggregate_seconds})


@register("federated")
def _make(config: MatrixConfig) -> list[Technique]:
    return [Federated()]
