"""Mechanisms at the edges of their number types and parameter ranges: right, or a pets error."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import pets.dp
from pets.dp import _sampling
from pets.errors import DPConfigurationError

OUT_OF_INT64 = re.escape(
    "discrete mechanisms take integers within +-2**62 (4.61e+18), so that the noisy result "
    "fits in 64 bits; these values reach beyond it. Fix: clip the counts"
)


@pytest.mark.parametrize(
    "values",
    [
        np.array([2**64 - 1], dtype=np.uint64),  # was released as -1 after a silent wrap
        np.array([2**63 - 1], dtype=np.int64),  # x + noise would saturate at the int64 limit
        np.array([-(2**63)], dtype=np.int64),
        np.array([1e30]),  # was cast to int64's minimum
    ],
)
@pytest.mark.parametrize("function", [pets.dp.discrete_laplace, pets.dp.discrete_gaussian])
def test_integers_beyond_int64_headroom_are_refused(values: np.ndarray, function: object) -> None:
    kwargs = {"epsilon": 1.0, "sensitivity": 1}
    if function is pets.dp.discrete_gaussian:
        kwargs["delta"] = 1e-6
    with pytest.raises(DPConfigurationError, match=OUT_OF_INT64):
        function(values, **kwargs)  # type: ignore[operator]


def test_integers_at_the_headroom_limit_are_noised_exactly() -> None:
    values = np.array([2**62, -(2**62), 0], dtype=np.int64)
    noisy = pets.dp.discrete_laplace(values, epsilon=1.0, sensitivity=1)
    assert noisy.dtype == np.int64
    assert np.all(np.abs(noisy - values) < 1000)


@pytest.mark.parametrize("sensitivity", [0.5, 0.999])
def test_a_discrete_laplace_sensitivity_below_one_is_refused(sensitivity: float) -> None:
    message = (
        f"sensitivity={sensitivity!r} cannot bound a change of integer data: one person changes "
        "integers by whole units, so the L1 sensitivity is a whole number >= 1. Calibrating to "
        f"{sensitivity!r} would add too little noise. Fix: pass sensitivity=1"
    )
    with pytest.raises(DPConfigurationError, match=re.escape(message)):
        pets.dp.discrete_laplace([3, 4], epsilon=1.0, sensitivity=sensitivity)


def test_a_fractional_discrete_laplace_sensitivity_is_refused_with_its_ceiling() -> None:
    with pytest.raises(DPConfigurationError, match=re.escape("Fix: pass sensitivity=2")):
        pets.dp.DiscreteLaplaceMechanism(epsilon=1.0, sensitivity=1.5)


def test_a_discrete_gaussian_sensitivity_below_one_is_refused() -> None:
    with pytest.raises(DPConfigurationError, match="the L2 sensitivity is >= 1"):
        pets.dp.DiscreteGaussianMechanism(epsilon=1.0, delta=1e-6, sensitivity=0.5)
    assert pets.dp.DiscreteGaussianMechanism(1.0, 1e-6, math.sqrt(2)).sensitivity == math.sqrt(2)


def test_laplace_at_a_tiny_epsilon_is_certified_by_opendp() -> None:
    """At epsilon=1e-300 OpenDP raised "scale (inf) must be finite"; now it samples."""
    mechanism = pets.dp.LaplaceMechanism(epsilon=1e-300, sensitivity=1.0)
    scale, k = mechanism.sampling_parameters(8)
    assert scale == pytest.approx(1e300, rel=1e-9)
    assert _sampling.float_measurement("laplace", scale, k, 8).map(1.0) <= 1e-300
    assert np.all(np.isfinite(mechanism(np.zeros(8))))


@pytest.mark.parametrize("epsilon", [1e-9, 1e-6])
def test_a_small_epsilon_does_not_inflate_the_noise_through_the_rounding_grid(
    epsilon: float,
) -> None:
    """The grid follows the sensitivity when it is finer than the scale: at most 1e-6 wider."""
    mechanism = pets.dp.LaplaceMechanism(epsilon=epsilon, sensitivity=1.0)
    scale, _ = mechanism.sampling_parameters(100_000)
    assert scale <= mechanism.scale * (1 + 1e-6)


def test_a_noise_scale_beyond_float64_is_refused_before_the_budget_is_charged() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    with pytest.raises(DPConfigurationError, match="the Laplace noise scale would be inf"):
        pets.dp.laplace([1.0], epsilon=1e-10, sensitivity=1e300, budget=budget)
    assert budget.ledger == ()


def test_a_noisy_result_that_overflows_float64_is_withheld() -> None:
    with pytest.raises(DPConfigurationError, match="the noisy values overflowed its number type"):
        pets.dp.laplace(np.full(64, np.finfo(np.float64).min), epsilon=1.0, sensitivity=1e300)


def test_a_discrete_noise_scale_beyond_int64_is_refused() -> None:
    with pytest.raises(
        DPConfigurationError, match=re.escape("the discrete Laplace noise scale would be 1e+20")
    ):
        pets.dp.DiscreteLaplaceMechanism(epsilon=1e-20, sensitivity=1)


def test_a_discrete_gaussian_opendp_cannot_calibrate_is_a_pets_error() -> None:
    with pytest.raises(
        DPConfigurationError,
        match=re.escape(
            "OpenDP cannot calibrate discrete Gaussian noise for epsilon=1000000.0, delta=1e-05"
        ),
    ):
        pets.dp.discrete_gaussian([1], epsilon=1e6, delta=1e-5, sensitivity=1)


@pytest.mark.parametrize("epsilon", [1e-300, 1e-10, 1e-6, 1e3, 1e10])
def test_the_analytic_gaussian_sigma_is_certified_at_extreme_epsilons(epsilon: float) -> None:
    from dp_accounting import gaussian_mechanism

    sigma = pets.dp.gaussian_sigma(epsilon, 1e-5)
    with np.errstate(divide="ignore"):  # dp_accounting's log1p(-1) far in the tail
        assert gaussian_mechanism.get_epsilon_gaussian(sigma, 1e-5) <= epsilon


def test_an_epsilon_the_gaussian_calibration_cannot_reach_is_a_pets_error() -> None:
    with pytest.raises(DPConfigurationError, match="the analytic Gaussian calibration fails"):
        pets.dp.gaussian_sigma(1e300, 1e-5)


@pytest.mark.parametrize("categories", [None, ["a", "b", "c"]])
def test_randomized_response_at_a_huge_epsilon_keeps_every_answer(categories: object) -> None:
    """math.exp(1e300) overflowed; the answers are kept with probability 1 - tiny."""
    answers = [1, 0, 1] if categories is None else ["a", "c", "b"]
    rr = pets.dp.RandomizedResponse(1e300, categories=categories)  # type: ignore[arg-type]
    assert rr.keep_probability > 1 - 1e-15
    assert rr(np.array(answers) if categories is None else answers).tolist() == answers


def test_k_ary_randomized_response_below_what_opendp_can_certify_is_a_pets_error() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    with pytest.raises(DPConfigurationError, match="OpenDP cannot certify randomized response"):
        pets.dp.randomized_response(["a"], epsilon=1e-300, categories="abcd", budget=budget)
    assert budget.ledger == ()  # refused before the budget was charged
    with pytest.raises(DPConfigurationError, match="OpenDP cannot certify randomized response"):
        pets.dp.RandomizedResponse(1e-300, categories="abcd")


def test_huge_integers_as_privacy_parameters_are_refused_not_overflow_errors() -> None:
    with pytest.raises(DPConfigurationError, match="epsilon must be finite and > 0, got inf"):
        pets.dp.LaplaceMechanism(epsilon=10**400, sensitivity=1.0)
    with pytest.raises(DPConfigurationError, match="sensitivity must be a finite number > 0"):
        pets.dp.LaplaceMechanism(epsilon=1.0, sensitivity=10**400)


# ---- wrong types: a pets error naming the fix, never a raw ValueError or AttributeError -----

BAD_DATA = {
    "a string": "abc",
    "strings": ["a", "b"],
    "ragged lists": [[1.0], [1.0, 2.0]],
    "bytes": b"ab",
    "Python objects": np.array([object()]),
    "complex numbers": np.array([1 + 2j]),  # the imaginary part used to vanish silently
}


@pytest.mark.parametrize("data", list(BAD_DATA.values()), ids=list(BAD_DATA))
@pytest.mark.parametrize(
    "release",
    [
        lambda x: pets.dp.laplace(x, epsilon=1.0, sensitivity=1.0),
        lambda x: pets.dp.gaussian(x, epsilon=1.0, delta=1e-5, sensitivity=1.0),
        lambda x: pets.dp.discrete_laplace(x, epsilon=1.0, sensitivity=1),
        lambda x: pets.dp.clip_values(x, 0.0, 1.0),
        lambda x: pets.dp.clip_l2(x, 1.0),
    ],
    ids=["laplace", "gaussian", "discrete_laplace", "clip_values", "clip_l2"],
)
def test_data_that_is_not_real_numbers_is_refused(data: object, release: object) -> None:
    with pytest.raises(DPConfigurationError, match="must be numeric"):
        release(data)  # type: ignore[operator]


def test_clipping_no_rows_gives_no_rows() -> None:
    assert pets.dp.clip_l2(np.empty((0, 3)), 1.0).shape == (0, 3)


@pytest.mark.parametrize(
    ("spend", "message"),
    [
        (lambda b: b.spend(10**400), "epsilon must be a finite number >= 0"),
        (lambda b: b.spend(0.1, label=5), "label must be a string or None, got int"),
        (lambda b: b.spend_event("laplace", epsilon=0.1, delta=0.0),
         "a privacy event must be a mapping"),
        (lambda b: b.spend_event({"type": "laplace", "noise_multiplier": 1.0}, epsilon="a",
                                 delta=0.0), "epsilon must be a finite number >= 0, got 'a'"),
        (lambda b: b.spend_mechanism(None), "spend_mechanism needs a pets.dp mechanism"),
    ],
)
def test_mistyped_spends_are_refused_and_not_recorded(spend: object, message: str) -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    with pytest.raises(DPConfigurationError, match=re.escape(message)):
        spend(budget)  # type: ignore[operator]
    assert budget.ledger == ()
