"""Every bad DP parameter is refused with DPConfigurationError naming the fix."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

import pets.dp
from pets.errors import DPConfigurationError, NonFiniteValueError


def raises(message: str) -> Any:
    return pytest.raises(DPConfigurationError, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize("epsilon", [0, -1.0, 0.0])
def test_epsilon_not_above_zero_is_refused(epsilon: float) -> None:
    with raises(
        f"epsilon must be finite and > 0, got {float(epsilon)!r}. "
        "Fix: pass a positive finite epsilon (smaller means more privacy, more noise)."
    ):
        pets.dp.laplace([1.0], epsilon=epsilon, sensitivity=1.0)


def test_infinite_epsilon_is_refused() -> None:
    with raises(
        "epsilon must be finite and > 0, got inf. "
        "Fix: pass a positive finite epsilon (smaller means more privacy, more noise)."
    ):
        pets.dp.LaplaceMechanism(math.inf, 1.0)


def test_nan_epsilon_is_refused() -> None:
    with raises(
        "epsilon must be a number > 0, got nan. "
        "Fix: pass the privacy-loss parameter as a positive float, e.g. epsilon=1.0."
    ):
        pets.dp.gaussian([1.0], epsilon=math.nan, delta=1e-5, sensitivity=1.0)


def test_string_epsilon_is_refused() -> None:
    with raises(
        "epsilon must be a number > 0, got '1'. "
        "Fix: pass the privacy-loss parameter as a positive float, e.g. epsilon=1.0."
    ):
        pets.dp.LaplaceMechanism("1", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("delta", [1.0, 1.5, -1e-9])
def test_delta_outside_unit_interval_is_refused(delta: float) -> None:
    with raises(
        f"delta must be in (0, 1), got {delta!r}. "
        "Fix: pass e.g. delta=1e-5, well below 1/(number of records)."
    ):
        pets.dp.GaussianMechanism(1.0, delta, 1.0)


def test_gaussian_needs_a_positive_delta() -> None:
    with raises(
        "delta must be in (0, 1), got 0.0. "
        "Fix: pass e.g. delta=1e-5, well below 1/(number of records)."
    ):
        pets.dp.gaussian([1.0], epsilon=1.0, delta=0.0, sensitivity=1.0)


def test_nan_delta_is_refused() -> None:
    with raises(
        "delta must be a number in [0, 1), got nan. "
        "Fix: pass e.g. delta=1e-5, well below 1/(number of records)."
    ):
        pets.dp.Budget(epsilon=1.0, delta=math.nan)


@pytest.mark.parametrize("sensitivity", [0.0, -2.0, math.nan, math.inf])
def test_sensitivity_not_above_zero_is_refused(sensitivity: float) -> None:
    with raises(
        f"sensitivity must be a finite number > 0, got {sensitivity!r}. "
        "Fix: pass the most one person's data can change the result "
        "(bound it with pets.dp.clip_values or pets.dp.clip_l2)."
    ):
        pets.dp.laplace([1.0], epsilon=1.0, sensitivity=sensitivity)


def test_classic_gaussian_refuses_epsilon_of_one_or_more() -> None:
    with raises(
        "calibration='classic' is only valid for epsilon < 1, got epsilon=1.5. "
        "Fix: use calibration='analytic' (Balle & Wang 2018), valid for every epsilon."
    ):
        pets.dp.gaussian([0.0], epsilon=1.5, delta=1e-5, sensitivity=1.0, calibration="classic")


def test_unknown_calibration_lists_the_known_ones() -> None:
    with raises("unknown calibration 'exact'. Fix: use one of analytic, classic."):
        pets.dp.GaussianMechanism(1.0, 1e-5, 1.0, calibration="exact")


def test_unknown_mechanism_lists_the_registered_names_at_run_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pets.dp.mechanisms import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # registration undone after

    @pets.dp.register_mechanism("test_only_constant")
    class Constant(pets.dp.LaplaceMechanism):
        pass

    names = ", ".join(pets.dp.registered_mechanisms())
    assert "test_only_constant" in names
    with raises(
        f"unknown mechanism 'lapalce'. Fix: use one of {names} "
        "or register yours with @pets.dp.register_mechanism."
    ):
        pets.dp.make_mechanism("lapalce", epsilon=1.0, sensitivity=1.0)


def test_discrete_mechanisms_refuse_fractional_values() -> None:
    with raises(
        "discrete mechanisms need integer values (counts, histograms), got dtype float64. "
        "Fix: round the values yourself, or use pets.dp.laplace / pets.dp.gaussian "
        "for real numbers."
    ):
        pets.dp.discrete_laplace([1.5, 2.0], epsilon=1.0, sensitivity=1)


def test_nan_in_the_data_is_refused_not_noised() -> None:
    with pytest.raises(
        NonFiniteValueError,
        match=re.escape("x holds NaN or infinity, which no amount of noise can protect."),
    ):
        pets.dp.laplace(np.array([1.0, np.nan]), epsilon=1.0, sensitivity=1.0)


def test_randomized_response_needs_two_distinct_categories() -> None:
    with raises(
        "categories must hold at least two distinct labels, got ['a', 'a']. "
        "Fix: list every possible answer once, e.g. categories=['a', 'b', 'c']."
    ):
        pets.dp.RandomizedResponse(1.0, categories=["a", "a"])


def test_randomized_response_refuses_labels_outside_the_categories() -> None:
    with raises(
        "labels ['z'] are not among categories ['a', 'b']. "
        "Fix: add them to categories (every possible answer must be listed)."
    ):
        pets.dp.randomized_response(["a", "z"], epsilon=1.0, categories=["a", "b"])


def test_binary_randomized_response_refuses_non_bits() -> None:
    with raises(
        "binary randomized response needs 0/1 or boolean values. "
        "Fix: pass bits, or give categories=[...] for labels."
    ):
        pets.dp.randomized_response([0, 2], epsilon=1.0)


def test_clip_values_needs_lower_below_upper() -> None:
    with raises(
        "lower must be < upper, got lower=1.0, upper=0.0. Fix: pass bounds with lower < upper."
    ):
        pets.dp.clip_values([0.5], 1.0, 0.0)


def test_clip_l2_needs_a_positive_norm() -> None:
    with raises(
        "max_norm must be a finite number > 0, got 0. "
        "Fix: pass the largest L2 norm one row may have, e.g. 1.0."
    ):
        pets.dp.clip_l2([[1.0]], 0)


def test_unknown_composition_lists_the_known_ones() -> None:
    with raises("unknown composition 'advanced'. Fix: use one of basic, prv, rdp."):
        pets.dp.Budget(epsilon=1.0, composition="advanced")


def test_dp_configuration_error_is_a_value_error() -> None:
    assert issubclass(DPConfigurationError, ValueError)
    assert issubclass(DPConfigurationError, pets.dp.PrivacyError)
