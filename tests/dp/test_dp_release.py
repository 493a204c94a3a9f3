"""release(): noise added inside a backend to a private result, then decrypted, paid for first."""

from __future__ import annotations

import numpy as np
import pytest

import pets
import pets.dp
from pets.errors import BudgetExceededError, DPConfigurationError


def test_release_adds_calibrated_noise_to_an_encrypted_result_on_the_plain_backend() -> None:
    backend = pets.backend("plain")
    total = backend.encrypt(np.full(4000, 50.0))
    mechanism = pets.dp.LaplaceMechanism(epsilon=1.0, sensitivity=1.0)
    released = pets.dp.release(total, mechanism=mechanism)
    assert released.shape == (4000,)
    assert abs(np.mean(np.abs(released - 50.0)) - mechanism.scale) < 0.1


def test_release_records_the_spend() -> None:
    backend = pets.backend("plain")
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5)
    mechanism = pets.dp.GaussianMechanism(0.5, 1e-6, 1.0)
    pets.dp.release(
        backend.encrypt(np.zeros(3)), mechanism=mechanism, budget=budget, label="scores"
    )
    assert budget.spent == (0.5, 1e-6)
    assert budget.ledger[0].label == "scores"


def test_release_decrypts_nothing_when_the_budget_would_be_exceeded() -> None:
    backend = pets.backend("plain")
    decrypted: list[object] = []
    real_decrypt = backend.decrypt

    def spy(tensor: pets.PrivateTensor) -> np.ndarray:
        decrypted.append(tensor)
        return real_decrypt(tensor)

    backend.decrypt = spy  # type: ignore[method-assign]
    budget = pets.dp.Budget(epsilon=1.0)
    budget.spend(0.9)
    with pytest.raises(BudgetExceededError):
        pets.dp.release(
            backend.encrypt(np.ones(2)),
            mechanism=pets.dp.LaplaceMechanism(0.5, 1.0),
            budget=budget,
        )
    assert decrypted == []


def test_release_refuses_a_mechanism_that_is_not_additive() -> None:
    backend = pets.backend("plain")
    with pytest.raises(DPConfigurationError, match="release needs an additive mechanism"):
        pets.dp.release(backend.encrypt(np.ones(2)), mechanism=pets.dp.RandomizedResponse(1.0))  # type: ignore[arg-type]


def test_release_of_an_integer_count_with_discrete_noise() -> None:
    backend = pets.backend("plain")
    count = backend.encrypt(np.array([120.0]))
    released = pets.dp.release(count, mechanism=pets.dp.DiscreteLaplaceMechanism(1.0, 1))
    assert released[0] == np.round(released[0])


def test_release_on_ckks_adds_noise_to_the_ciphertext() -> None:
    backend = pets.backend("ckks", depth=1)
    encrypted = backend.encrypt(np.array([10.0, 20.0, 30.0]))
    mechanism = pets.dp.GaussianMechanism(1.0, 1e-5, 1.0)
    released = pets.dp.release(encrypted.sum(), mechanism=mechanism)
    assert released.shape == ()  # sum() drops the summed axis, as numpy does
    assert abs(released - 60.0) < 8 * mechanism.scale
    assert abs(released - 60.0) > 1e-6  # noise was added, not just CKKS rounding
