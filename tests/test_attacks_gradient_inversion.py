"""Gradient inversion: one example's update gives the digit away; DP noise on it does not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pets

Example = tuple[torch.Tensor, torch.Tensor]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def make_model(activation: type[torch.nn.Module] = torch.nn.Sigmoid, seed: int = 0,
               bias: bool = True) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32, bias=bias), activation(),
                               torch.nn.Linear(32, 10))


def update_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """What a federated client shares: the gradient of its mean cross-entropy."""
    loss = torch.nn.functional.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def example(digits: tuple[np.ndarray, np.ndarray], rows: slice = slice(0, 1)) -> Example:
    return torch.tensor(digits[0][rows]), torch.tensor(digits[1][rows])


def test_the_analytic_attack_recovers_a_digit_exactly(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = make_model()
    x, y = example(digits)
    report = pets.attacks.gradient_inversion(
        model, update_of(model, x, y), input_shape=(64,), num_classes=10,
        true_inputs=x, true_labels=y,
    )
    assert report.method == "analytic"
    assert report.labels.tolist() == y.tolist()
    assert report.mse is not None and report.mse < 1e-10  # float32 gradients
    assert report.psnr is not None and report.psnr > 80


def test_dlg_recovers_the_label_and_the_digit(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = make_model()
    x, y = example(digits, slice(5, 6))
    report = pets.attacks.gradient_inversion(
        model, update_of(model, x, y), input_shape=(64,), num_classes=10, method="dlg",
        iterations=10, true_inputs=x, true_labels=y,
    )
    assert report.method == "dlg"
    assert report.label_accuracy == 1.0
    assert report.psnr is not None and report.psnr > 40
    assert report.gradient_distance < 1e-6


def test_idlg_reads_every_label_from_the_last_bias_gradient(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = make_model(torch.nn.ReLU)
    found = []
    for label in range(10):
        row = int(np.flatnonzero(digits[1] == label)[0])
        x, y = example(digits, slice(row, row + 1))
        _, labels = pets.attacks.gradient_inversion(
            model, update_of(model, x, y), input_shape=(64,), num_classes=10,
        )
        found.append(int(labels[0]))
    assert found == list(range(10))


def test_dlg_rebuilds_a_batch_of_two_with_soft_labels(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = make_model()
    x, y = example(digits, slice(0, 2))
    report = pets.attacks.gradient_inversion(
        model, update_of(model, x, y), input_shape=(64,), num_classes=10, batch_size=2,
        iterations=30, true_inputs=x, true_labels=y,
    )
    assert report.method == "dlg"
    assert report.label_accuracy == 1.0
    assert report.psnr is not None and report.psnr > 30


def test_dp_noise_on_the_update_defeats_the_reconstruction(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Clipping alone keeps the ratio dW / db (exact recovery); Gaussian noise destroys it."""
    model = make_model()
    x, y = example(digits)
    update = update_of(model, x, y)
    psnr = {}
    for sigma in (0.0, 0.01, 1.0):
        noisy = pets.attacks.clip_and_noise(update, max_grad_norm=1.0, noise_multiplier=sigma,
                                            seed=0)
        report = pets.attacks.gradient_inversion(
            model, noisy, input_shape=(64,), num_classes=10, method="analytic", true_inputs=x,
        )
        assert report.psnr is not None
        psnr[sigma] = report.psnr
    assert psnr[0.0] > 80
    assert psnr[0.01] < 20
    assert psnr[1.0] < psnr[0.0] - 60


def test_dlg_by_cosine_survives_clipping_and_squared_error_does_not(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Clipping rescales the update; cosine matching ignores scale (Geiping et al. 2020)."""
    model = make_model()
    x, y = example(digits, slice(2, 3))
    clipped = pets.attacks.clip_and_noise(update_of(model, x, y), max_grad_norm=1.0,
                                          noise_multiplier=0.0)
    psnr = {}
    for distance in ("cosine", "l2"):
        report = pets.attacks.gradient_inversion(
            model, clipped, input_shape=(64,), num_classes=10, method="dlg", iterations=10,
            distance=distance, true_inputs=x, data_range=1.0,
        )
        assert report.psnr is not None
        psnr[distance] = report.psnr
    assert psnr["cosine"] > 40
    assert psnr["l2"] < 10


def test_dlg_fails_on_a_noised_update(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = make_model()
    x, y = example(digits, slice(2, 3))
    noisy = pets.attacks.clip_and_noise(update_of(model, x, y), max_grad_norm=1.0,
                                        noise_multiplier=0.1, seed=0)
    report = pets.attacks.gradient_inversion(
        model, noisy, input_shape=(64,), num_classes=10, method="dlg", iterations=10,
        true_inputs=x, data_range=1.0,
    )
    assert report.psnr is not None and report.psnr < 10  # a blank image scores about 7 dB


def test_gradients_keyed_by_name_for_a_model_taking_images(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), *make_model().children())
    x, y = example(digits)
    x = x.reshape(1, 8, 8)
    named = dict(zip([n for n, _ in model.named_parameters()], update_of(model, x, y),
                     strict=True))
    inputs, labels = pets.attacks.gradient_inversion(
        model, {k: v.numpy() for k, v in named.items()}, input_shape=(8, 8), num_classes=10,
    )
    assert inputs.shape == (1, 8, 8)
    assert labels.tolist() == y.tolist()
    assert np.allclose(inputs, x.numpy(), atol=1e-5)


def test_the_report_reads_and_serialises(digits: tuple[np.ndarray, np.ndarray]) -> None:
    model = make_model()
    x, y = example(digits)
    report = pets.attacks.gradient_inversion(
        model, update_of(model, x, y), input_shape=(64,), num_classes=10, true_inputs=x,
        true_labels=y,
    )
    assert "gradient inversion (analytic)" in str(report) and "PSNR" in str(report)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["labels"] == y.tolist() and len(data["inputs"][0]) == 64


def test_clip_and_noise_bounds_the_norm() -> None:
    update = [np.full(3, 10.0), np.full((2, 2), -10.0)]
    clipped = pets.attacks.clip_and_noise(update, max_grad_norm=2.0, noise_multiplier=0.0)
    norm = np.sqrt(sum(float((a**2).sum()) for a in clipped))
    assert norm == pytest.approx(2.0)


# --- bad input -------------------------------------------------------------------


def test_too_few_gradients_are_refused() -> None:
    model = make_model()
    with pytest.raises(pets.ShapeMismatchError,
                       match=r"^got 3 gradient\(s\) for 4 trainable parameter\(s\)"):
        pets.attacks.gradient_inversion(model, [p.detach() for p in model.parameters()][:3],
                                        input_shape=(64,), num_classes=10)


def test_a_gradient_of_the_wrong_shape_is_refused() -> None:
    model = make_model()
    update = [torch.zeros_like(p) for p in model.parameters()]
    update[1] = torch.zeros(31)
    with pytest.raises(pets.ShapeMismatchError, match=r"^gradient for 0.bias has shape \(31,\)"):
        pets.attacks.gradient_inversion(model, update, input_shape=(64,), num_classes=10)


def test_the_analytic_attack_needs_a_first_layer_bias(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    model = make_model(bias=False)
    x, y = example(digits)
    with pytest.raises(pets.UnsupportedModelError, match=r"analytic attack needs one example"):
        pets.attacks.gradient_inversion(model, update_of(model, x, y), input_shape=(64,),
                                        num_classes=10, method="analytic")


def test_an_unknown_distance_lists_the_distances() -> None:
    model = make_model()
    with pytest.raises(pets.DPConfigurationError,
                       match=r"^unknown distance 'l1'. Fix: use one of l2, cosine.$"):
        pets.attacks.gradient_inversion(model, list(model.parameters()), input_shape=(64,),
                                        num_classes=10, distance="l1")


def test_an_unknown_method_lists_the_methods() -> None:
    model = make_model()
    with pytest.raises(pets.DPConfigurationError,
                       match=r"^unknown method 'magic'. Fix: use one of auto, analytic, dlg.$"):
        pets.attacks.gradient_inversion(model, list(model.parameters()), input_shape=(64,),
                                        num_classes=10, method="magic")


def test_a_negative_noise_multiplier_is_refused() -> None:
    with pytest.raises(pets.DPConfigurationError, match=r"^noise_multiplier must be a finite"):
        pets.attacks.clip_and_noise([np.ones(2)], max_grad_norm=1.0, noise_multiplier=-1.0)


def test_a_non_finite_update_is_refused() -> None:
    model = make_model()
    update = [torch.zeros_like(p) for p in model.parameters()]
    update[0][0, 0] = float("nan")
    with pytest.raises(pets.NonFiniteValueError, match=r"^gradient for 0.weight holds NaN"):
        pets.attacks.gradient_inversion(model, update, input_shape=(64,), num_classes=10)
