"""Property tests of the private-tensor API: random shapes, values and operation sequences.

The specification is numpy: every sequence of operations gives what numpy gives on
the same plain arrays (the plain backend to float rounding, the others within their
stated tolerance), or is refused with a ``pets.PetsError``, never another exception.
``any_backend`` (tests/conftest.py) runs the same sequences on every backend, with
values in [-1, 1] and at most ``LEVELS`` multiplicative levels (CKKS depth 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pets

EXAMPLES = int(os.environ.get("PETS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
#: fewer examples where every operation is homomorphic (CKKS, MPC)
FUZZ_PRIVATE = settings(FUZZ, max_examples=max(5, EXAMPLES // 5))
LEVELS = 3


@dataclass(frozen=True)
class Step:
    """One operation: its name, the levels it costs, and how to apply it to x (private or numpy)."""

    name: str
    levels: int
    apply: Callable[[Any], Any]

    def __repr__(self) -> str:
        return self.name


def _scalar(bound: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=-bound, max_value=bound, allow_nan=False).filter(
        lambda v: abs(v) > 1e-3
    )


@st.composite
def steps_for(
    draw: st.DrawFn, shape: tuple[int, ...], bound: float
) -> tuple[Step, tuple[int, ...]]:
    """An operation valid on ``shape``, and the shape it gives."""
    ndim = len(shape)
    options = ["add_scalar", "rsub_scalar", "add_self", "neg", "mul_scalar", "mul_self",
               "div_scalar", "pow", "polyval", "add_array", "mul_array"]
    if ndim >= 1:
        options += ["matmul", "sum", "mean", "index"]
    if ndim == 2:
        options += ["transpose", "reshape"]
    name = draw(st.sampled_from(options))
    c = draw(_scalar(1.0))
    if name == "add_scalar":
        return Step(f"x + {c:.3g}", 0, lambda x: x + c), shape
    if name == "rsub_scalar":
        return Step(f"{c:.3g} - x", 0, lambda x: c - x), shape
    if name == "add_self":
        return Step("x + x", 0, lambda x: x + x), shape
    if name == "neg":
        return Step("-x", 0, lambda x: -x), shape
    if name == "mul_scalar":
        return Step(f"x * {c:.3g}", 1, lambda x: x * c), shape
    if name == "mul_self":
        return Step("x * x", 1, lambda x: x * x), shape
    if name == "div_scalar":
        d = draw(_scalar(4.0).filter(lambda v: abs(v) >= 0.5))
        return Step(f"x / {d:.3g}", 1, lambda x: x / d), shape
    if name == "pow":
        k = draw(st.integers(min_value=1, max_value=3))
        return Step(f"x ** {k}", (k - 1).bit_length(), lambda x: x**k), shape
    if name == "polyval":
        # constants (one coefficient): test_a_constant_polynomial_is_refused_with_a_pets_error
        coefficients = draw(st.lists(_scalar(1.0), min_size=2, max_size=3))
        levels = (len(coefficients) - 1).bit_length()

        def polyval(x: Any) -> Any:
            if isinstance(x, pets.PrivateTensor):
                return x.polyval(coefficients)
            return np.polynomial.polynomial.polyval(x, coefficients)

        return Step(f"polyval({coefficients})", levels, polyval), shape
    if name in ("add_array", "mul_array"):
        # a plain operand of the full shape, or of its trailing axes (numpy broadcasting)
        tail = shape[draw(st.integers(min_value=0, max_value=ndim)):]
        array = draw(hnp.arrays(np.float64, tail, elements=st.floats(-1, 1)))
        if name == "add_array":
            return Step(f"{tail} array + x", 0, lambda x: array + x), shape
        return Step(f"x * {tail} array", 1, lambda x: x * array), shape
    if name == "matmul":
        m = draw(st.integers(min_value=1, max_value=4))
        weights = draw(hnp.arrays(np.float64, (shape[-1], m), elements=st.floats(-1, 1)))
        return Step(f"x @ {weights.shape}", 1, lambda x: x @ weights), (*shape[:-1], m)
    if name in ("sum", "mean"):
        axis = draw(st.none() | st.integers(min_value=-ndim, max_value=ndim - 1))
        keepdims = draw(st.booleans())
        kept = [1 if axis is None or i == axis % ndim else n for i, n in enumerate(shape)]
        dropped = tuple(n for i, n in enumerate(shape) if axis is not None and i != axis % ndim)
        out = tuple(kept) if keepdims else dropped
        levels = 1 if name == "mean" else 0

        def reduce(x: Any) -> Any:
            if isinstance(x, pets.PrivateTensor):
                return getattr(x, name)(axis, keepdims=keepdims)
            return np.asarray(getattr(np, name)(x, axis=axis, keepdims=keepdims))

        return Step(f"x.{name}({axis}, keepdims={keepdims})", levels, reduce), out
    if name == "index":
        i = draw(st.integers(min_value=-shape[0], max_value=shape[0] - 1))
        return Step(f"x[{i}]", 0, lambda x: x[i]), shape[1:]
    if name == "transpose":
        return Step("x.T", 0, lambda x: x.T), (shape[1], shape[0])
    return Step("x.reshape(-1)", 0, lambda x: x.reshape(-1)), (shape[0] * shape[1],)


@st.composite
def programs(
    draw: st.DrawFn, *, bound: float, levels: int | None, max_steps: int = 4
) -> tuple[np.ndarray, list[Step]]:
    """Input values and a sequence of operations valid on them, within ``levels``."""
    shape = tuple(draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=5)))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound)))
    steps: list[Step] = []
    used = 0
    for _ in range(draw(st.integers(min_value=1, max_value=max_steps))):
        step, next_shape = draw(steps_for(shape, bound))
        if levels is not None and used + step.levels > levels:
            continue
        steps.append(step)
        used += step.levels
        shape = next_shape
    return values, steps


def _run(backend: pets.Backend, values: np.ndarray, steps: list[Step]) -> tuple[Any, Any]:
    expected: Any = values
    private = backend.encrypt(values)
    for step in steps:
        expected = np.asarray(step.apply(expected), dtype=np.float64)
        private = step.apply(private)
    return private, expected


@FUZZ
@given(programs(bound=1e6, levels=None))
def test_plain_backend_follows_numpy(program: tuple[np.ndarray, list[Step]]) -> None:
    values, steps = program
    backend = pets.backend("plain")
    private, expected = _run(backend, values, steps)
    assert private.shape == expected.shape, steps
    np.testing.assert_allclose(backend.decrypt(private), expected, rtol=1e-9,
                               atol=1e-9 * max(1.0, float(np.max(np.abs(expected), initial=0))))


@FUZZ
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=5),
                  elements=st.floats(allow_nan=False, allow_infinity=False)))
def test_plain_backend_keeps_values_at_the_float64_limits(values: np.ndarray) -> None:
    backend = pets.backend("plain")
    np.testing.assert_array_equal(backend.decrypt(backend.encrypt(values)), values)
    np.testing.assert_array_equal(backend.decrypt(-backend.encrypt(values)), -values)


@FUZZ
@given(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), st.integers(-8, 8))
def test_an_axis_out_of_range_is_refused(shape: tuple[int, ...], axis: int) -> None:
    x = pets.backend("plain").encrypt(np.ones(shape))
    if len(shape) and -len(shape) <= axis < len(shape):
        assert x.sum(axis=axis).shape == np.ones(shape).sum(axis=axis).shape
        return
    if not shape:
        return  # a 0-d sum has no axes to check
    with pytest.raises(pets.ShapeMismatchError, match="out of range"):
        x.sum(axis=axis)


@FUZZ
@given(
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
)
def test_operands_that_do_not_broadcast_are_refused(
    shape: tuple[int, ...], other: tuple[int, ...]
) -> None:
    x = pets.backend("plain").encrypt(np.ones(shape))
    try:
        fits = np.broadcast_shapes(other, shape) == shape
    except ValueError:
        fits = False
    if fits:
        assert (x + np.ones(other)).shape == shape
        return
    with pytest.raises(pets.ShapeMismatchError):
        x + np.ones(other)


@FUZZ_PRIVATE
@given(program=programs(bound=1.0, levels=LEVELS, max_steps=3))
def test_every_backend_follows_numpy_within_its_tolerance(
    any_backend: pets.Backend, program: tuple[np.ndarray, list[Step]]
) -> None:
    values, steps = program
    try:
        private, expected = _run(any_backend, values, steps)
        got = any_backend.decrypt(private)
    except pets.PetsError:
        return  # refused as the contract allows (an unsupported operation, a missing key)
    assert private.shape == expected.shape, steps
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=10 * any_backend.tolerance * scale,
                               err_msg=repr(steps))


def test_a_constant_polynomial_is_refused_with_a_pets_error() -> None:
    x = pets.backend("plain").encrypt(np.zeros(3))
    with pytest.raises(pets.UnsupportedOperationError, match="use the plain constant"):
        x.polyval([1.0])
