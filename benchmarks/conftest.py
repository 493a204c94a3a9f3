"""Workloads shared by the benchmark files, built once per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pets_benchmarks.baselines import RecipeContext
from pets_benchmarks.workloads import digits, linear_weights, train_digits_mlp

import pets


@dataclass
class DigitsHE:
    net: Any
    weights: list[tuple[np.ndarray, np.ndarray]]
    plain: Any
    ckks: Any
    backend: Any
    x_batch: np.ndarray
    recipe: RecipeContext


@pytest.fixture(scope="session")
def digits_he() -> DigitsHE:
    data = digits()
    net = train_digits_mlp()
    backend = pets.backend("ckks")
    ckks = pets.compile(net, backend=backend, example_input=data.x_train)
    plain = pets.compile(net, backend=pets.backend("plain"), example_input=data.x_train)
    params = backend.params
    x_batch = np.tile(data.x_test, (8, 1))[: params.slots]
    recipe = RecipeContext(params.poly_modulus_degree, params.coeff_mod_bit_sizes,
                           params.scale_bits)
    return DigitsHE(net, linear_weights(net), plain, ckks, backend, x_batch, recipe)

