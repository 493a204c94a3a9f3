"""DP-SGD pays for every step it takes: past the plan, step by step, and nothing on refusal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pets.dp
from pets.errors import BudgetExceededError, DPConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def setup(budget: pets.dp.Budget, **overrides: object) -> pets.dp.PrivateTraining:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    rng = np.random.default_rng(0)
    data = TensorDataset(torch.tensor(rng.normal(size=(64, 4)), dtype=torch.float32),
                         torch.tensor(rng.integers(0, 2, size=64)))
    settings: dict[str, object] = {
        "module": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "data_loader": DataLoader(data, batch_size=16), "target_epsilon": 1.0,
        "target_delta": 1e-5, "epochs": 1, "max_grad_norm": 1.0, "accountant": "rdp",
        "budget": budget,
    }
    settings.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pets.dp.InsecureRNGWarning)
        return pets.dp.make_private(**settings)  # type: ignore[arg-type]


def steps(training: pets.dp.PrivateTraining, count: int, taken: list[int] | None = None) -> None:
    """Take ``count`` optimizer steps, appending 1 to ``taken`` for each one that completes."""
    done = 0
    while done < count:
        for x, y in training.data_loader:
            if done == count:
                break
            training.optimizer.zero_grad()
            torch.nn.functional.cross_entropy(training.module(x), y).backward()
            training.optimizer.step()
            done += 1
            if taken is not None:
                taken.append(1)


def test_training_past_the_plan_is_charged_and_stops_at_the_budget() -> None:
    budget = pets.dp.Budget(epsilon=2.0, delta=1e-5)
    training = setup(budget)  # plans 1 epoch = 4 steps at epsilon 1.0
    assert budget.spent == (1.0, 1e-5)
    taken: list[int] = []
    with pytest.raises(BudgetExceededError, match=r"DP-SGD step \d+ was not taken") as caught:
        steps(training, 40, taken)  # ten epochs where one was planned
    assert 4 < len(taken) < 40
    assert f"step {len(taken) + 1} was not taken" in str(caught.value)
    assert budget.spent[0] <= 2.0
    assert training.epsilon() <= budget.spent[0] + 1e-9  # what was taken is paid for
    weights = [p.detach().clone() for p in training.module.parameters()]
    with pytest.raises(BudgetExceededError):
        steps(training, 1)  # it stays stopped, and the refused step changes nothing
    assert all(torch.equal(a, b) for a, b in zip(weights, training.module.parameters(),
                                                  strict=True))


def test_training_within_the_plan_charges_nothing_more() -> None:
    budget = pets.dp.Budget(epsilon=2.0, delta=1e-5)
    training = setup(budget)
    steps(training, 4)
    assert len(budget.ledger) == 1 and budget.spent == (1.0, 1e-5)


def test_an_opacus_refusal_charges_nothing_and_is_a_pets_error() -> None:
    budget = pets.dp.Budget(epsilon=2.0, delta=1e-5)
    other = torch.nn.Linear(4, 2)
    with pytest.raises(DPConfigurationError,
                       match=r"Opacus could not prepare DP-SGD: Module parameters are different "
                             r"than optimizer Parameters\. Nothing was charged"):
        setup(budget, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    assert budget.ledger == ()
