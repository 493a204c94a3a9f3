"""Model inversion: a trained model's confidences give away what each class looks like."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import pets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


class NearestCentroid:
    """The attacker's own classifier: each class's mean digit, from data the target never saw."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.centroids = np.stack([x[y == label].mean(axis=0) for label in range(10)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        distances = ((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1)


@pytest.fixture(scope="module")
def setting() -> tuple[torch.nn.Module, Any]:
    """A target MLP trained on 900 digits; the attacker's evaluator on the other 897."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    target_rows, attacker_rows = order[:900], order[900:]
    model = make_model(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    features, labels = torch.tensor(x[target_rows]), torch.tensor(y[target_rows])
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return model.eval(), NearestCentroid(x[attacker_rows], y[attacker_rows])


def test_white_box_inversion_is_recognised_far_above_chance(
    setting: tuple[torch.nn.Module, Any],
) -> None:
    model, evaluator = setting
    report = pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10,
                                          evaluator=evaluator, samples_per_class=2)
    assert report.inputs.shape == (20, 64) and report.classes.tolist() == sorted(
        list(range(10)) * 2)
    assert report.recognised is not None and report.recognised >= 0.7
    assert report.above_chance  # Clopper-Pearson lower end above 1/10
    assert report.target_confidence.min() > 0.9
    assert report.inputs.min() >= 0.0 and report.inputs.max() <= 1.0
    assert report.queries is None


def test_black_box_inversion_through_a_prediction_api(
    setting: tuple[torch.nn.Module, Any],
) -> None:
    """Only confidences come back, as from a served model; gradients are estimated."""
    model, evaluator = setting

    def api(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.as_tensor(inputs, dtype=torch.float32)), 1).numpy()

    report = pets.attacks.model_inversion(api, input_shape=(64,), num_classes=10,
                                          evaluator=evaluator, steps=50, directions=10)
    assert report.queries == 50 * 2 * 10 * 10  # steps x antithetic pairs x rows
    assert report.above_chance
    assert "black-box, 10000 queries" in str(report)


def test_an_untrained_model_gives_away_much_less(setting: tuple[torch.nn.Module, Any]) -> None:
    trained, evaluator = setting
    scores = [
        pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10,
                                     evaluator=evaluator, samples_per_class=2).recognised
        for model in (trained, make_model(1))
    ]
    assert scores[0] is not None and scores[1] is not None
    assert scores[0] > scores[1] + 0.4


def test_regularisers_and_a_class_subset(setting: tuple[torch.nn.Module, Any]) -> None:
    model, evaluator = setting
    report = pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10,
                                          evaluator=evaluator, classes=[3, 7], l2=0.01, tv=0.01,
                                          image_shape=(8, 8), steps=100)
    assert report.classes.tolist() == [3, 7]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["classes"] == [3, 7] and data["chance"] == 0.1


def test_without_an_evaluator_only_confidences_are_reported(
    setting: tuple[torch.nn.Module, Any],
) -> None:
    model, _ = setting
    report = pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10, classes=[0],
                                          steps=20)
    assert report.recognised is None and report.interval is None and not report.above_chance


# --- bad input -------------------------------------------------------------------


def test_a_class_outside_the_range_is_refused(setting: tuple[torch.nn.Module, Any]) -> None:
    model, _ = setting
    with pytest.raises(pets.DPConfigurationError, match=r"^classes must be labels in \[0, 10\)"):
        pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10, classes=[10])


def test_an_image_shape_that_does_not_fit_is_refused(
    setting: tuple[torch.nn.Module, Any],
) -> None:
    model, _ = setting
    with pytest.raises(pets.ShapeMismatchError, match=r"^image_shape \(4, 4\) must have >= 2"):
        pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10,
                                     image_shape=(4, 4))


def test_an_api_returning_the_wrong_shape_is_refused() -> None:
    with pytest.raises(pets.ShapeMismatchError, match=r"^the model returned shape \(2,\)"):
        pets.attacks.model_inversion(lambda x: np.ones(2), input_shape=(4,), num_classes=2,
                                     steps=1, directions=1)


def test_a_bad_confidence_level_is_refused(setting: tuple[torch.nn.Module, Any]) -> None:
    model, _ = setting
    with pytest.raises(pets.DPConfigurationError, match=r"^confidence must be a float"):
        pets.attacks.model_inversion(model, input_shape=(64,), num_classes=10, confidence=95)
