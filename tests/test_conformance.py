"""One specification, run against every backend and compared with the plain reference.

Each backend is held to its own stated ``tolerance`` (absolute error on inputs
in [-1, 1]); the plain backend defines the expected answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pets
from pets.backends.levelled import LevelledRequirements

Case = Callable[[Any, np.ndarray], Any]

W = np.random.default_rng(7).normal(size=(6, 4)) * 0.5
BIAS = np.linspace(-0.5, 0.5, 4)

CASES: dict[str, Case] = {
    "add_private": lambda x, _: x + x,
    "add_scalar": lambda x, _: x + 1.5,
    "radd_array": lambda x, a: a + x,
    "sub_private": lambda x, _: x - x * 0.25,
    "rsub_scalar": lambda x, _: 2.0 - x,
    "mul_scalar": lambda x, _: x * 0.3,
    "mul_row": lambda x, a: x * a[0],
    "mul_array": lambda x, a: x * a,
    "mul_private": lambda x, _: x * x,
    "negate": lambda x, _: -x,
    "square": lambda x, _: x.square(),
    "matmul": lambda x, _: x @ W,
    "linear_layer": lambda x, _: x @ W + BIAS,
    "sum_samples": lambda x, _: x.sum(axis=0),
    "sum_features": lambda x, _: x.sum(axis=-1),
    "sum_all": lambda x, _: x.sum(),
    "polynomial": lambda x, _: x.polyval([0.1, 0.5, 0.2, -0.05]),
    "mixed_depths": lambda x, _: x * x + x,
    "mlp": lambda x, _: ((x @ W + BIAS).square()) @ np.ones((4, 2)),
}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, size=(5, 6))


@pytest.mark.parametrize("case", sorted(CASES))
def test_operation_matches_plain_reference(
    any_backend: pets.Backend, plain: pets.Backend, data: np.ndarray, case: str
) -> None:
    operand = np.random.default_rng(5).uniform(-1, 1, size=data.shape)
    expected = plain.decrypt(CASES[case](plain.encrypt(data), operand))
    result = CASES[case](any_backend.encrypt(data), operand)
    got = any_backend.decrypt(result)
    assert result.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=any_backend.tolerance, rtol=0)


@pytest.mark.parametrize("shape", [(), (6,), (1, 6), (3, 1)])
def test_round_trip_keeps_shape(any_backend: pets.Backend, shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(11).uniform(-1, 1, size=shape)
    got = any_backend.decrypt(any_backend.encrypt(values))
    assert got.shape == shape
    np.testing.assert_allclose(got, values, atol=any_backend.tolerance)


def test_torch_input_is_accepted(any_backend: pets.Backend) -> None:
    import torch

    values = torch.linspace(-1, 1, 6).reshape(2, 3)
    got = any_backend.decrypt(any_backend.encrypt(values))
    np.testing.assert_allclose(got, values.numpy(), atol=any_backend.tolerance)


def test_tensor_bytes_round_trip(any_backend: pets.Backend, data: np.ndarray) -> None:
    x = any_backend.encrypt(data) * 0.5
    loaded = pets.load_tensor(x.to_bytes(), any_backend)
    assert loaded.shape == x.shape and loaded.layout == x.layout
    np.testing.assert_allclose(any_backend.decrypt(loaded), data * 0.5, atol=any_backend.tolerance)


def test_public_copy_evaluates_and_key_holder_decrypts(
    any_backend: pets.Backend, data: np.ndarray
) -> None:
    any_backend.prepare(pets.Requirements(
        extension=LevelledRequirements(depth=1, matmul_shapes=((6, 4),))))
    server = pets.load_backend(any_backend.public().to_bytes())
    x = server.load_tensor(any_backend.encrypt(data).to_bytes())
    y = any_backend.load_tensor((x @ W + BIAS).to_bytes())
    np.testing.assert_allclose(any_backend.decrypt(y), data @ W + BIAS,
                               atol=any_backend.tolerance)
