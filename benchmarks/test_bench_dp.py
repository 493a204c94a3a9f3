"""What DP-SGD costs: one epoch of the same MLP on the same digits, private vs not.

    pytest benchmarks/test_bench_dp.py

All runs sit in the group ``dp-sgd-epoch``, so the report shows them side by
side with the non-private epoch as the (1.0) baseline; the ratio of the means
is the DP-SGD overhead (per-example gradients, clipping, noise). Each run
records in ``extra_info`` the test accuracy after its 6 epochs (1 warm-up +
5 timed), the private ones at the epsilon they were calibrated for.

Before it is timed, each run checks that what it times trains the model: the same
training (a fresh copy, 6 epochs, untimed) must reach :data:`PLAIN_FLOOR` test
accuracy without DP, and with DP lose at most :data:`MOST_LOST` against the
non-private model (measured on 2 cores: 0.94 without DP, 0.93-0.94 at epsilon 8,
0.87-0.88 at epsilon 1). A run that misses fails instead of being timed.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pets_benchmarks.dp import accuracy, digits_datasets, prepare, run_epoch

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")
EPOCHS = 6  # 1 warm-up round + 5 timed rounds, one epoch each
#: the non-private MLP's least test accuracy after EPOCHS epochs (chance: 0.1)
PLAIN_FLOOR = 0.85
#: the most test accuracy DP-SGD may lose against it, per epsilon
MOST_LOST = {1.0: 0.25, 8.0: 0.15}


def setup(epsilon: float | None) -> Any:
    torch.set_num_threads(1)
    train_set, _ = digits_datasets()
    return prepare(train_set, epochs=EPOCHS, epsilon=epsilon)


def held_out_accuracy(model: torch.nn.Module) -> float:
    return accuracy(model, digits_datasets()[1])


def trained_accuracy(epsilon: float | None) -> float:
    """Test accuracy of a fresh copy trained for EPOCHS epochs (the check, untimed)."""
    training = setup(epsilon)
    for _ in range(EPOCHS):
        run_epoch(training.model, training.optimizer, training.loader)
    return held_out_accuracy(training.model)


@pytest.fixture(scope="module")
def plain_accuracy() -> float:
    value = trained_accuracy(None)
    assert value >= PLAIN_FLOOR, (f"the non-private MLP reaches {value:.3f}, under "
                                  f"{PLAIN_FLOOR}; not timed")
    return value


@pytest.mark.benchmark(group="dp-sgd-epoch")
def test_non_private_epoch(benchmark: Any, plain_accuracy: float) -> None:
    training = setup(None)
    benchmark.pedantic(run_epoch, args=(training.model, training.optimizer, training.loader),
                       rounds=EPOCHS - 1, warmup_rounds=1)
    benchmark.extra_info["epsilon"] = "inf (non-private)"
    benchmark.extra_info["test_accuracy"] = held_out_accuracy(training.model)


@pytest.mark.benchmark(group="dp-sgd-epoch")
@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_dp_sgd_epoch(benchmark: Any, epsilon: float, plain_accuracy: float) -> None:
    private = trained_accuracy(epsilon)
    assert private >= plain_accuracy - MOST_LOST[epsilon], (
        f"DP-SGD at epsilon {epsilon:g} reaches {private:.3f} against {plain_accuracy:.3f} "
        f"without DP, more than {MOST_LOST[epsilon]} lost; not timed")
    training = setup(epsilon)
    benchmark.pedantic(run_epoch, args=(training.model, training.optimizer, training.loader),
                       rounds=EPOCHS - 1, warmup_rounds=1)
    benchmark.extra_info["epsilon"] = epsilon
    benchmark.extra_info["delta"] = training.private.target_delta
    benchmark.extra_info["epsilon_spent"] = training.private.epsilon()
    benchmark.extra_info["test_accuracy"] = held_out_accuracy(training.model)
