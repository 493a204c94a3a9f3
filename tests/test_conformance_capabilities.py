"""numpy semantics and capability-gated operations, on every backend against plain.

Each case either matches the plain reference within the backend's stated
tolerance (``relative`` cases: relative to the value, for approximated
functions whose error grows with it) or, where the backend's capabilities or
packing rule it out, raises :class:`pets.UnsupportedOperationError` — never a
wrong answer and never an engine error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pets

Case = Callable[[Any], Any]

DATA = np.random.default_rng(21).uniform(-1, 1, size=(4, 6))
OTHER = np.random.default_rng(22).uniform(-1, 1, size=(6, 3))

#: cases any backend must compute (numpy semantics that cost nothing)
CORE: dict[str, Case] = {
    "div_scalar": lambda x: x / 4.0,
    "div_row": lambda x: x / (np.arange(6) + 1.0),
    "pow_3": lambda x: x**3,
    "mean_samples": lambda x: x.mean(axis=0),
    "sum_keepdims": lambda x: x.sum(axis=1, keepdims=True),
    "sum_tuple": lambda x: x.sum(axis=(0, 1)),
    "reshape_noop": lambda x: x.reshape(4, 6),
}

#: cases a backend computes when its capabilities and packing allow, else refuses
GATED: dict[str, tuple[Case, Callable[[pets.Backend, str], bool]]] = {
    "index_row": (lambda x: x[1], lambda be, layout: layout != "batched"),
    "slice_rows": (lambda x: x[1:3], lambda be, layout: layout != "batched"),
    "index_column": (lambda x: x[:, 2], lambda be, layout: layout != "per_sample"),
    "transpose": (lambda x: x.T, lambda be, layout: be.capabilities.max_rank is None),
    "reshape": (lambda x: x.reshape(2, 12), lambda be, layout: be.capabilities.max_rank is None),
    "private_matmul": (
        lambda x: x @ x.backend.encrypt(OTHER),
        lambda be, layout: be.capabilities.private_weights,
    ),
    "relu": (lambda x: x.relu(), lambda be, layout: be.capabilities.comparisons),
    "greater": (lambda x: x > 0.25, lambda be, layout: be.capabilities.comparisons),
    "max_features": (lambda x: x.max(axis=1), lambda be, layout: be.capabilities.comparisons),
    "softmax": (lambda x: x.softmax(axis=1), lambda be, layout: be.capabilities.comparisons),
    "concat_rows": (
        lambda x: pets.concat([x, x * 2.0], axis=0), lambda be, layout: layout != "batched"
    ),
    "concat_columns": (
        lambda x: pets.concat([x, x * 2.0], axis=1), lambda be, layout: layout != "per_sample"
    ),
}

#: approximations built on + and * (and comparisons where used): relative tolerance 1e-2
SMOOTH: dict[str, Case] = {
    "exp": lambda x: x.exp(interval=(-1.0, 1.0)),
    "sigmoid": lambda x: x.sigmoid(interval=(-1.0, 1.0)),
    "reciprocal": lambda x: (x + 2.0).reciprocal(interval=(1.0, 3.0)),
}


def _layout(backend: pets.Backend) -> str:
    return backend.default_layout


@pytest.mark.parametrize("case", sorted(CORE))
def test_numpy_semantics(any_backend: pets.Backend, plain: pets.Backend, case: str) -> None:
    expected = plain.decrypt(CORE[case](plain.encrypt(DATA)))
    result = CORE[case](any_backend.encrypt(DATA))
    assert result.shape == expected.shape
    np.testing.assert_allclose(any_backend.decrypt(result), expected,
                               atol=max(any_backend.tolerance, 1e-12) * 4)


@pytest.mark.parametrize("case", sorted(GATED))
def test_gated_operation_matches_plain_or_is_refused(
    any_backend: pets.Backend, plain: pets.Backend, case: str
) -> None:
    function, allowed = GATED[case]
    expected = plain.decrypt(function(plain.encrypt(DATA)))
    x = any_backend.encrypt(DATA)
    if not allowed(any_backend, _layout(any_backend)):
        with pytest.raises(pets.UnsupportedOperationError, match=f"the {any_backend.name} "
                           "backend cannot"):
            function(x)
        return
    result = function(x)
    assert result.shape == expected.shape
    np.testing.assert_allclose(any_backend.decrypt(result), expected,
                               atol=any_backend.tolerance * 10)


@functools.lru_cache(maxsize=1)
def _deep_ckks() -> pets.Backend:
    """CKKS with depth for Newton's iterations (keys made once for the module)."""
    return pets.backend("ckks", depth=12)


@pytest.mark.parametrize("case", sorted(SMOOTH))
def test_approximated_functions_within_one_percent(
    any_backend: pets.Backend, plain: pets.Backend, case: str
) -> None:
    expected = plain.decrypt(SMOOTH[case](plain.encrypt(DATA)))
    if any_backend.lowering == "levelled":
        if _layout(any_backend) != "batched":
            pytest.skip("the approximations are the same arithmetic in either CKKS packing")
        any_backend = _deep_ckks()
    got = any_backend.decrypt(SMOOTH[case](any_backend.encrypt(DATA)))
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=any_backend.tolerance * 10)


def test_values_just_above_negative_integers_reveal_right(any_backend: pets.Backend) -> None:
    # CrypTen's decoder put these 1.0 too low (it divides negatives by scale - 1)
    values = -np.arange(1.0, 200.0) + 3e-4
    got = any_backend.decrypt(any_backend.encrypt(values) * 1.0)
    np.testing.assert_allclose(got, values, atol=max(any_backend.tolerance, 1e-12) * 200)


def test_sum_over_a_missing_axis_is_refused(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match="axis 5 is out of range for a tensor of "
                       "2 dimension"):
        any_backend.encrypt(DATA).sum(axis=5)


def test_complex_input_is_refused(any_backend: pets.Backend) -> None:
    with pytest.raises(TypeError, match="encrypt needs real numbers, got complex values"):
        any_backend.encrypt(np.array([1 + 2j]))


def test_an_empty_array_is_refused(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=r"cannot encrypt an empty array \(shape "
                       r"\(0, 8\)\)"):
        any_backend.encrypt(np.zeros((0, 8)))


def test_division_by_a_private_tensor_names_the_reciprocal(plain: pets.Backend) -> None:
    x = plain.encrypt(DATA)
    with pytest.raises(TypeError, match=r"write x \* y.reciprocal\(\)"):
        x / x


def test_truth_value_of_a_private_tensor_is_refused(plain: pets.Backend) -> None:
    with pytest.raises(TypeError, match="the truth value of a private tensor is secret"):
        bool(plain.encrypt(DATA) > 0)


def test_a_sigmoid_over_a_wide_interval_stays_in_range(any_backend: pets.Backend,
                                                        plain: pets.Backend) -> None:
    if not any_backend.capabilities.comparisons:
        pytest.skip("the symmetric sigmoid needs a comparison; CKKS has the range for e^x")
    z = np.linspace(-30.0, 30.0, 13)
    got = any_backend.decrypt(any_backend.encrypt(z).sigmoid(interval=(-40.0, 40.0)))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), atol=1e-3)
