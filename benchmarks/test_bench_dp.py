"""What DP-SGD costs: one epoch of the same MLP on the same digits, private vs not.

    pytest benchmarks/test_bench_dp.py

All runs sit in the group ``dp-sgd-epoch``, so the report shows them side by
side with the non-private epoch as the (1.0) baseline; the ratio of the means
is the DP-SGD overhead (per-example gradients, clipping, noise). Each run
records in ``extra_info`` the test accuracy after its 6 epochs (1 warm-up +
5 timed), the private ones at the epsilon they were calibrated for.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pets_benchmarks.dp import accuracy, digits_datasets, prepare, run_epoch

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")
EPOCHS = 6  # 1 warm-up round + 5 timed rounds, one epoch each


def setup(epsilon: float | None) -> Any:
    torch.set_num_threads(1)
    train_set, _ = digits_datasets()
    return prepare(train_set, epochs=EPOCHS, epsilon=epsilon)


def held_out_accuracy(model: torch.nn.Module) -> float:
    return accuracy(model, digits_datasets()[1])


@pytest.mark.benchmark(group="dp-sgd-epoch")
def test_non_private_epoch(benchmark: Any) -> None:
    training = setup(None)
    benchmark.pedantic(run_epoch, args=(training.model, training.optimizer, training.loader),
                       rounds=EPOCHS - 1, warmup_rounds=1)
    benchmark.extra_info["epsilon"] = "inf (non-private)"
    benchmark.extra_info["test_accuracy"] = held_out_accuracy(training.model)


@pytest.mark.benchmark(group="dp-sgd-epoch")
@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_dp_sgd_epoch(benchmark: Any, epsilon: float) -> None:
    training = setup(epsilon)
    benchmark.pedantic(run_epoch, args=(training.model, training.optimizer, training.loader),
                       rounds=EPOCHS - 1, warmup_rounds=1)
    benchmark.extra_info["epsilon"] = epsilon
    benchmark.extra_info["delta"] = training.private.target_delta
    benchmark.extra_info["epsilon_spent"] = training.private.epsilon()
    benchmark.extra_info["test_accuracy"] = held_out_accuracy(training.model)
