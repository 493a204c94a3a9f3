"""Mechanisms add the noise they promise, from OpenDP's secure samplers.

Statistical checks use n = 20 000 draws and tolerances of at least 5 standard
errors, so a correct sampler fails them with probability below 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import pets.dp
from pets.dp import _sampling

N = 20_000
KS_LIMIT = 0.025  # KS distance; a correct sampler exceeds it with p < 1e-10 at N draws


def test_laplace_noise_has_the_calibrated_scale_and_shape() -> None:
    mechanism = pets.dp.LaplaceMechanism(epsilon=0.5, sensitivity=2.0)
    assert mechanism.scale == 4.0
    noise = mechanism.noise(N)
    assert abs(np.mean(np.abs(noise)) / 4.0 - 1) < 0.05  # E|X| = b
    assert stats.kstest(noise, stats.laplace(scale=4.0).cdf).statistic < KS_LIMIT


def test_gaussian_noise_has_the_calibrated_sigma_and_shape() -> None:
    mechanism = pets.dp.GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=0.5)
    noise = mechanism.noise(N)
    assert abs(np.std(noise) / mechanism.scale - 1) < 0.05
    assert stats.kstest(noise, stats.norm(scale=mechanism.scale).cdf).statistic < KS_LIMIT


def test_discrete_laplace_noise_is_integer_with_the_calibrated_spread() -> None:
    mechanism = pets.dp.DiscreteLaplaceMechanism(epsilon=0.5, sensitivity=1)
    noise = mechanism.noise(N)
    assert noise.dtype == np.int64
    assert abs(np.std(noise) / mechanism.std - 1) < 0.05
    q = math.exp(-1 / mechanism.scale)  # P[Z = 0] = (1 - q) / (1 + q)
    assert abs(np.mean(noise == 0) - (1 - q) / (1 + q)) < 0.02


def test_discrete_gaussian_noise_is_integer_with_the_calibrated_spread() -> None:
    mechanism = pets.dp.DiscreteGaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1)
    noise = mechanism.noise(N)
    assert noise.dtype == np.int64
    assert abs(np.std(noise) / mechanism.scale - 1) < 0.05
    assert abs(np.mean(noise)) < 5 * mechanism.scale / math.sqrt(N)


def test_binary_randomized_response_keeps_bits_with_probability_e_eps_over_1_plus_e_eps() -> None:
    epsilon = 1.0
    bits = np.ones(N, dtype=np.int64)
    reported = pets.dp.randomized_response(bits, epsilon=epsilon)
    expected = math.exp(epsilon) / (1 + math.exp(epsilon))
    assert reported.dtype == bits.dtype
    assert abs(np.mean(reported == 1) - expected) < 0.02
    zeros = pets.dp.randomized_response(np.zeros(N, dtype=bool), epsilon=epsilon)
    assert zeros.dtype == bool
    assert abs(np.mean(zeros) - (1 - expected)) < 0.02  # a 0 reported as 1


def test_kary_randomized_response_keeps_labels_and_spreads_the_rest_uniformly() -> None:
    epsilon, categories, n = 1.0, ["a", "b", "c", "d"], 3000
    reported = pets.dp.randomized_response(["a"] * n, epsilon=epsilon, categories=categories)
    keep = math.exp(epsilon) / (math.exp(epsilon) + 3)
    assert abs(np.mean(reported == "a") - keep) < 0.05
    for other in "bcd":
        assert abs(np.mean(reported == other) - (1 - keep) / 3) < 0.04


def test_analytic_gaussian_is_the_exact_balle_wang_calibration() -> None:
    from dp_accounting import gaussian_mechanism

    sigma = pets.dp.gaussian_sigma(0.5, 1e-6)
    assert gaussian_mechanism.get_epsilon_gaussian(sigma, 1e-6) <= 0.5
    assert gaussian_mechanism.get_epsilon_gaussian(sigma * 0.999, 1e-6) > 0.5  # and tight


def test_classic_gaussian_uses_the_dwork_roth_formula_and_costs_more_noise() -> None:
    classic = pets.dp.gaussian_sigma(0.5, 1e-5, calibration="classic")
    assert classic == pytest.approx(math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5)
    assert classic > pets.dp.gaussian_sigma(0.5, 1e-5, calibration="analytic")


def test_opendp_certifies_the_laplace_measurement_including_input_rounding() -> None:
    mechanism = pets.dp.LaplaceMechanism(epsilon=0.7, sensitivity=3.0)
    scale, k = mechanism.sampling_parameters(1000)
    measurement = _sampling.float_measurement("laplace", scale, k, 1000)
    assert measurement.map(3.0) <= 0.7


def test_opendp_certifies_the_gaussian_rho_including_input_rounding() -> None:
    mechanism = pets.dp.GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=2.0)
    sigma, k = mechanism.sampling_parameters(1000)
    measurement = _sampling.float_measurement("gaussian", sigma, k, 1000)
    unit_sigma = mechanism.scale / 2.0
    assert measurement.map(2.0) <= 1 / (2 * unit_sigma**2) * (1 + 1e-12)


def test_opendp_certifies_the_discrete_and_randomized_response_epsilons() -> None:
    laplace = pets.dp.DiscreteLaplaceMechanism(epsilon=0.3, sensitivity=2)
    assert _sampling.int_measurement("laplace", laplace.scale).map(2.0) <= 0.3
    rr = pets.dp.RandomizedResponse(0.8)
    keep = rr.keep_probability
    assert math.log(keep / (1 - keep)) <= 0.8 + 1e-12


def test_continuous_outputs_lie_on_a_grid_so_low_bits_cannot_leak_the_input() -> None:
    """Mironov 2012: x + naive float noise reveals x through which floats can occur.

    OpenDP rounds x to a 2**k grid and adds exact noise in grid units, so every
    output is a multiple of 2**k, whatever x was.
    """
    mechanism = pets.dp.LaplaceMechanism(epsilon=1.0, sensitivity=1.0)
    _, k = mechanism.sampling_parameters(1000)
    released = mechanism(np.full(1000, 0.1))
    units = released / 2.0**k
    assert np.all(units == np.round(units))


def test_large_vectors_are_sampled_in_parallel_chunks_with_one_noise_per_value() -> None:
    size = 3 * _sampling.CHUNK + 17
    noise = pets.dp.LaplaceMechanism(1.0, 1.0).noise((size,))
    assert noise.shape == (size,)
    assert len(np.unique(noise)) == size  # no chunk reused another's noise


@pytest.mark.parametrize(
    "x",
    [3.0, [1.0, 2.0], np.ones((2, 3)), torch.ones(2, 2)],
    ids=["scalar", "list", "matrix", "torch"],
)
def test_inputs_of_any_kind_come_back_as_numpy_of_the_same_shape(x: object) -> None:
    out = pets.dp.laplace(x, epsilon=1.0, sensitivity=1.0)
    assert isinstance(out, np.ndarray)
    assert out.shape == np.shape(np.asarray(x))


def test_noise_is_centred_on_the_input() -> None:
    values = np.full(N, 100.0)
    released = pets.dp.gaussian(values, epsilon=1.0, delta=1e-5, sensitivity=1.0)
    sigma = pets.dp.gaussian_sigma(1.0, 1e-5)
    assert abs(np.mean(released) - 100.0) < 5 * sigma / math.sqrt(N)


def test_mechanisms_are_found_by_name() -> None:
    mechanism = pets.dp.make_mechanism("discrete_laplace", epsilon=1.0, sensitivity=1)
    assert isinstance(mechanism, pets.dp.DiscreteLaplaceMechanism)
    assert repr(mechanism) == "DiscreteLaplaceMechanism(epsilon=1.0, sensitivity=1.0)"


def test_input_perturbation_estimates_a_proportion_under_local_dp() -> None:
    """Local DP: each of N people flips their own bit; the curator debiases the mean."""
    truth = np.zeros(N, dtype=np.int64)
    truth[: N * 3 // 10] = 1  # 30% answer yes
    epsilon = 1.0
    reported = pets.dp.randomized_response(truth, epsilon=epsilon)
    keep = pets.dp.RandomizedResponse(epsilon).keep_probability
    estimate = (np.mean(reported) - (1 - keep)) / (2 * keep - 1)
    assert abs(estimate - 0.3) < 0.04
