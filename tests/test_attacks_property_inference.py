"""Property inference: shadow models tell a training set's class share from the model."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import pets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def train(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """How the target owner trains: a small MLP, 50 full-batch Adam steps."""
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    features, labels = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(50):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return model


def samplers(digits: tuple[np.ndarray, np.ndarray], share: float, other: float) -> tuple[Any, Any]:
    x, y = digits
    return (pets.attacks.class_share_sampler(x, y, label=0, share=share, size=200),
            pets.attacks.class_share_sampler(x, y, label=0, share=other, size=200))


@pytest.mark.parametrize("features", ["outputs", "parameters"])
def test_a_30_vs_10_percent_class_share_is_told_apart(
    digits: tuple[np.ndarray, np.ndarray], features: str,
) -> None:
    torch.manual_seed(0)
    report = pets.attacks.property_inference(train, *samplers(digits, 0.3, 0.1),
                                             num_shadows=8, num_targets=16, features=features)
    assert report.n_targets == 32 and report.n_shadows == 16
    assert report.accuracy >= 0.8
    assert report.above_chance  # Clopper-Pearson lower end above 50%
    assert report.p_value < 0.01


def test_with_no_difference_the_attack_stays_at_chance(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    torch.manual_seed(0)
    report = pets.attacks.property_inference(train, *samplers(digits, 0.1, 0.1),
                                             num_shadows=8, num_targets=16)
    assert not report.above_chance
    assert report.interval[0] <= 0.5 <= report.interval[1]


def test_the_report_reads_and_serialises(digits: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(0)
    report = pets.attacks.property_inference(train, *samplers(digits, 0.4, 0.05),
                                             num_shadows=2, num_targets=2, probe_size=8)
    assert str(report).startswith("property inference (outputs, 4 shadow models): accuracy")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["chance"] == 0.5 and data["n_targets"] == 4


def test_the_sampler_draws_the_share_asked(digits: tuple[np.ndarray, np.ndarray]) -> None:
    draw = pets.attacks.class_share_sampler(*digits, label=3, share=0.25, size=80)
    _, labels = draw(np.random.default_rng(1))
    assert len(labels) == 80 and int((labels == 3).sum()) == 20


# --- bad input -------------------------------------------------------------------


def test_a_share_above_one_is_refused(digits: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(pets.DPConfigurationError, match=r"^share must be a fraction in \[0, 1\]"):
        pets.attacks.class_share_sampler(*digits, label=0, share=1.5, size=10)


def test_a_set_larger_than_the_data_allows_is_refused(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    with pytest.raises(pets.DPConfigurationError,
                       match=r"^a 1000-row set with 50% label 0 needs 500 rows with the label"):
        pets.attacks.class_share_sampler(*digits, label=0, share=0.5, size=1000)


def test_unknown_features_are_refused(digits: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(pets.DPConfigurationError,
                       match=r"^unknown features 'gradients'. Fix: use one of outputs, parameters"):
        pets.attacks.property_inference(train, *samplers(digits, 0.3, 0.1),
                                        features="gradients")


def test_one_shadow_per_side_is_refused(digits: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(pets.DPConfigurationError, match=r"^num_shadows must be an integer >= 2"):
        pets.attacks.property_inference(train, *samplers(digits, 0.3, 0.1), num_shadows=1)
