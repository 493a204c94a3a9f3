"""DP-SGD inside fit: on plain, the clipped sums equal Opacus' for the same batch.

Opacus computes per-sample gradients (GradSampleModule) and its DPOptimizer
clips and sums them (noise 0 here, so the sums can be compared); pets clips
on private tensors with the norm and inverse square root written on shares.
Tolerance: relative 1e-5, since Opacus divides by ``norm + 1e-6`` and pets by
``norm`` (a relative difference of ``1e-6 / norm``), far inside MPC's
fixed-point resolution (1.5e-5).
"""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import pets
import pets.dp
from pets.compiler import private_sgd
from pets.compiler.backprop import Step, chain
from pets.compiler.training import _forward, _loss, _private_parameters


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5)) * np.array([[3.0]] * 6 + [[0.05]] * 6)  # clipped and not
    return x, rng.integers(0, 3, 12)


def _opacus_clipped_sums(net: nn.Module, x: np.ndarray, y: np.ndarray, norm: float
                         ) -> list[np.ndarray]:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    module = GradSampleModule(copy.deepcopy(net).double())
    optimiser = DPOptimizer(torch.optim.SGD(module.parameters(), lr=0.1), noise_multiplier=0.0,
                            max_grad_norm=norm, expected_batch_size=len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = nn.functional.cross_entropy(module(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        optimiser.pre_step()
    return [p.grad.numpy() * len(x) for p in module.parameters()]  # type: ignore[union-attr]


def test_clipped_sums_equal_opacus() -> None:
    x, y = _batch()
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    settings = pets.dp.SGD(epsilon=4.0, delta=1e-5, max_grad_norm=0.5)
    layers = chain(model, loss="cross_entropy")
    _private_parameters(model, layers)
    out, cache = _forward(model, layers, be.encrypt(x), Step(np.random.default_rng(0)))
    grad, _ = _loss(out, be.encrypt(np.eye(3)[y]), "cross_entropy", (-30.0, 30.0), True, False,
                    per_example=True)
    sums = private_sgd.clipped_sum(model, layers, cache, grad, settings)
    expected = _opacus_clipped_sums(_net(), x, y, 0.5)
    names = [layers[0].weight, layers[0].bias, layers[2].weight, layers[2].bias]
    for name, want in zip(names, expected, strict=True):
        np.testing.assert_allclose(be.decrypt(sums[name]), want, rtol=1e-5, atol=1e-9,
                                   err_msg=name)


def test_dp_fit_charges_the_budget_and_refuses_what_it_cannot_cover() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = np.eye(3)[rng.integers(0, 3, 40)]
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    budget = pets.dp.Budget(epsilon=5.0, delta=1e-4)
    settings = pets.dp.SGD(epsilon=4.0, delta=1e-5, max_grad_norm=1.0, budget=budget,
                           accountant="rdp")
    history = model.fit(be.encrypt(x), be.encrypt(y), epochs=2, batch_size=10, lr=0.1,
                        dp=settings, seed=1)
    assert history.noise_multiplier == pytest.approx(
        settings.noise_multiplier(sample_rate=0.25, epochs=2))
    assert budget.spent == (4.0, 1e-5)
    with pytest.raises(pets.BudgetExceededError):
        model.fit(be.encrypt(x), be.encrypt(y), epochs=2, batch_size=10, dp=settings)
    with pytest.raises(ValueError, match=re.escape(
        "reveal_loss opens an exact training loss, which DP-SGD does not cover"
    )):
        model.fit(be.encrypt(x), be.encrypt(y), reveal_loss=True,
                  dp=pets.dp.SGD(epsilon=1.0, delta=1e-5, max_grad_norm=1.0))


def test_dp_refuses_layers_without_per_example_gradient() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, 1, 4, 4))
    settings: Any = pets.dp.SGD(epsilon=1.0, delta=1e-5, max_grad_norm=1.0)
    with pytest.raises(pets.UnsupportedModelError, match=re.escape(
        "conv2d has no per-example gradient under DP-SGD in pets.fit."
    )):
        model.fit(be.encrypt(np.zeros((2, 1, 4, 4))), be.encrypt(np.eye(2)), dp=settings)
