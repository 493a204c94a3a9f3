"""make_private: DP-SGD through Opacus, with the model checked first and the spend recorded."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pets.dp
from pets.errors import BudgetExceededError, DPConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def easy_data(n: int = 256, seed: int = 0) -> TensorDataset:
    """Two Gaussian blobs: linearly separable, so even noisy training learns them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
    return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def private(model: torch.nn.Module, **overrides: object) -> pets.dp.PrivateTraining:
    settings: dict[str, object] = {
        "module": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.5),
        "data_loader": DataLoader(easy_data(), batch_size=32),
        "target_epsilon": 4.0,
        "target_delta": 1e-5,
        "epochs": 3,
        "max_grad_norm": 1.0,
        "accountant": "rdp",
    }
    settings.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pets.dp.InsecureRNGWarning)
        return pets.dp.make_private(**settings)  # type: ignore[arg-type]


def train(training: pets.dp.PrivateTraining) -> None:
    for _ in range(training.epochs):
        for x, y in training.data_loader:
            if len(y):
                training.optimizer.zero_grad()
                torch.nn.functional.cross_entropy(training.module(x), y).backward()
                training.optimizer.step()


def test_algorithm_perturbation_learns_within_the_target_epsilon() -> None:
    training = private(mlp())
    assert training.epsilon() == 0.0  # nothing spent before the first step
    train(training)
    x, y = easy_data(512, seed=1).tensors
    with torch.no_grad():
        accuracy = (training.module(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8
    assert 0 < training.epsilon() <= 4.0 * 1.01  # Opacus calibrates to within 1%
    assert training.noise_multiplier > 0


def test_the_default_prv_accountant_reaches_the_target() -> None:
    training = private(mlp(), accountant="prv", epochs=1)
    train(training)
    assert training.epsilon() <= 4.0 * 1.01


def test_an_insecure_rng_is_announced_with_its_own_warning() -> None:
    model = mlp()
    with pytest.warns(pets.dp.InsecureRNGWarning, match="torch's non-cryptographic PRNG"):
        pets.dp.make_private(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=DataLoader(easy_data(), batch_size=32),
            target_epsilon=2.0,
            target_delta=1e-5,
            epochs=1,
            max_grad_norm=1.0,
            accountant="rdp",
        )


def test_a_model_with_batchnorm_is_refused_with_every_problem_and_the_fix() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.Linear(8, 8),
        torch.nn.BatchNorm1d(8),
    )
    with pytest.raises(DPConfigurationError) as caught:
        private(model)
    message = str(caught.value)
    assert message.startswith("the model has 2 part(s) DP-SGD cannot train:\n  - ")
    assert "\n  - 1 (BatchNorm1d): BatchNorm cannot support training" in message
    assert "\n  - 3 (BatchNorm1d): BatchNorm cannot support training" in message
    assert "Fix: call pets.dp.fix_model(module)" in message
    assert len(caught.value.issues) == 2  # type: ignore[attr-defined]


def test_fix_model_replaces_batchnorm_so_training_can_start() -> None:
    model = pets.dp.fix_model(
        torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    )
    assert isinstance(list(model.children())[1], torch.nn.GroupNorm)
    train(private(model, epochs=1))


def test_the_planned_training_is_charged_to_the_budget_before_it_starts() -> None:
    budget = pets.dp.Budget(epsilon=5.0, delta=1e-5)
    training = private(mlp(), budget=budget, label="blobs model")
    (entry,) = budget.ledger
    assert (entry.epsilon, entry.delta, entry.label) == (4.0, 1e-5, "blobs model")
    assert entry.event["type"] == "self_composed"
    assert entry.event["count"] == training.epochs * len(training.data_loader)
    assert training.ledger_entry == entry


def test_training_that_would_exceed_the_budget_does_not_touch_the_model() -> None:
    budget = pets.dp.Budget(epsilon=3.0, delta=1e-5)
    model = mlp()
    with pytest.raises(BudgetExceededError):
        private(model, budget=budget)
    assert budget.ledger == ()
    assert all(not layer._forward_hooks for layer in model.modules())  # not wrapped by Opacus


def test_an_unknown_accountant_lists_the_known_ones() -> None:
    with pytest.raises(
        DPConfigurationError,
        match=re.escape("unknown accountant 'moments'. Fix: use one of gdp, prv, rdp."),
    ):
        private(mlp(), accountant="moments")


def test_a_bad_target_epsilon_is_refused_before_opacus_sees_it() -> None:
    with pytest.raises(
        DPConfigurationError,
        match=re.escape("target_epsilon must be finite and > 0, got -1.0."),
    ):
        private(mlp(), target_epsilon=-1.0)


def test_dp_sgd_noise_does_not_follow_torch_manual_seed() -> None:
    """Seeding torch (as most scripts do) must not make the DP noise predictable."""
    import warnings

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import pets.dp

    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            training = pets.dp.make_private(
                module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                data_loader=DataLoader(data, batch_size=16), target_epsilon=2.0,
                target_delta=1e-5, epochs=1, max_grad_norm=1.0, accountant="rdp",
            )
            for x, y in training.data_loader:
                if len(y):
                    training.optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(training.module(x), y).backward()
                    training.optimizer.step()
        weights.append(model.weight.detach().clone())
    assert not torch.equal(weights[0], weights[1])
