"""joint_noise(): DP noise that the parties of an MPC run add as shares, at the mechanism's scale.

Each mechanism's noise is split into shares whose sum has exactly its
distribution (Gaussian, Laplace, discrete Laplace) or within 1e-8 of it
(discrete Gaussian). Measured std of the released noise must be within 5% of
the mechanism's nominal std: with 20,000 values the std is estimated to about
0.8% (Laplace's heavy tails included), so 5% is over six standard errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pets
import pets.dp
from pets.errors import DPConfigurationError

VALUES = 20_000
TOLERANCE = 0.05


def _mechanisms() -> dict[str, pets.dp.AdditiveMechanism]:
    return {
        "laplace": pets.dp.LaplaceMechanism(epsilon=1.0, sensitivity=1.0),
        "gaussian": pets.dp.GaussianMechanism(epsilon=1.0, delta=1e-5, sensitivity=1.0),
        "discrete_laplace": pets.dp.DiscreteLaplaceMechanism(epsilon=0.5, sensitivity=1),
        "discrete_gaussian": pets.dp.DiscreteGaussianMechanism(0.5, 1e-5, sensitivity=1),
    }


@pytest.mark.parametrize("name", sorted(_mechanisms()))
@pytest.mark.parametrize("parts", [2, 3])
def test_shares_sum_to_the_nominal_std_and_each_is_a_fraction(name: str, parts: int) -> None:
    mechanism = _mechanisms()[name]
    shares = [mechanism.noise_share(VALUES, parts=parts) for _ in range(parts)]
    assert np.std(sum(shares)) == pytest.approx(mechanism.std, rel=TOLERANCE)
    assert np.std(shares[0]) == pytest.approx(mechanism.std / np.sqrt(parts), rel=TOLERANCE)
    if name.startswith("discrete"):
        assert shares[0].dtype == np.int64


def test_a_mechanism_that_cannot_split_refuses_shares() -> None:
    class Constant(pets.dp.LaplaceMechanism):
        noise_share = pets.dp.AdditiveMechanism.noise_share

    with pytest.raises(DPConfigurationError, match="cannot split its noise into 2 shares"):
        Constant(1.0).noise_share(3, parts=2)


def test_discrete_gaussian_shares_below_sigma_one_are_refused() -> None:
    mechanism = pets.dp.DiscreteGaussianMechanism(epsilon=20.0, delta=1e-5, sensitivity=1)
    with pytest.raises(DPConfigurationError, match="below 1, where their sum is no longer"):
        mechanism.noise_share(3, parts=3)


def test_colluding_must_name_fewer_parties_than_the_run_has() -> None:
    be = pets.backend("plain")
    with pytest.raises(DPConfigurationError, match=r"colluding=1 with 1 party: .* from 0 to 0"):
        pets.dp.joint_noise(be.encrypt(np.zeros(2)), pets.dp.LaplaceMechanism(1.0), colluding=1)


def test_joint_noise_needs_an_additive_mechanism() -> None:
    be = pets.backend("plain")
    with pytest.raises(DPConfigurationError, match="needs an additive mechanism"):
        pets.dp.joint_noise(be.encrypt(np.zeros(2)), pets.dp.RandomizedResponse(1.0))  # type: ignore[arg-type]


def test_noise_multiplier_gives_dp_sgd_noise_and_its_epsilon() -> None:
    mechanism = pets.dp.GaussianMechanism.from_noise_multiplier(1.1, delta=1e-5, sensitivity=2.0)
    assert mechanism.scale == pytest.approx(2.2)
    assert pets.dp.gaussian_sigma(mechanism.epsilon, 1e-5) == pytest.approx(1.1, rel=1e-3)


def _released_noise(party: pets.Party) -> dict[str, Any]:
    be = party.backend
    stds: dict[str, Any] = {}
    for name, mechanism in _mechanisms().items():
        zeros = be.encrypt(np.zeros(VALUES) if party.rank == 0 else None, src=0)
        stds[name] = float(np.std(be.decrypt(pets.dp.joint_noise(zeros, mechanism))))
    if party.parties == 3:
        zeros = be.encrypt(np.zeros(VALUES) if party.rank == 0 else None, src=0)
        gaussian = _mechanisms()["gaussian"]
        stds["gaussian_colluding_1"] = float(
            np.std(be.decrypt(pets.dp.joint_noise(zeros, gaussian, colluding=1)))
        )
    return stds


@pytest.mark.parametrize("parties", [2, 3])
def test_noise_released_from_mpc_has_the_nominal_std(parties: int) -> None:
    results = pets.run_parties(_released_noise, parties=parties, timeout=120)
    assert all(result == results[0] for result in results)  # one joint reveal
    for name, mechanism in _mechanisms().items():
        assert results[0][name] == pytest.approx(mechanism.std, rel=TOLERANCE), name
    if parties == 3:  # every share drawn as one of 2: any 2 shares alone are the whole noise
        nominal = _mechanisms()["gaussian"].std * np.sqrt(3 / 2)
        assert results[0]["gaussian_colluding_1"] == pytest.approx(nominal, rel=TOLERANCE)
