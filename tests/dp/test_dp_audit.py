"""audit(): membership inference finds an overfit model's leak, and none beyond epsilon under DP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pets_benchmarks import audit as bench_audit
from pets_benchmarks.audit import split_digits

import pets.dp
from pets.dp.auditing.bounds import auc, clopper_pearson, epsilon_lower_bound, tpr_at_fpr
from pets.dp.auditing.rmia import rmia_scores
from pets.errors import DPConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

Data = tuple[np.ndarray, np.ndarray]


# --- the statistics --------------------------------------------------------


def test_clopper_pearson_matches_the_closed_form_at_zero_successes() -> None:
    low, high = clopper_pearson([0], 100, 0.05)
    assert low[0] == 0.0
    assert high[0] == pytest.approx(1 - 0.05 ** (1 / 100))


def test_auc_and_tpr_of_perfectly_separated_scores() -> None:
    members, non_members = np.arange(10.0, 20.0), np.arange(0.0, 10.0)
    assert auc(members, non_members) == 1.0
    assert tpr_at_fpr(members, non_members, 0.0) == 1.0
    assert auc(non_members, members) == 0.0


def test_the_lower_bound_of_an_epsilon_dp_mechanism_never_exceeds_its_epsilon() -> None:
    """Audit the Laplace mechanism itself: it is exactly epsilon-DP for x = 0 vs x = 1."""
    epsilon, n = 2.0, 5000
    mechanism = pets.dp.LaplaceMechanism(epsilon=epsilon, sensitivity=1.0)
    in_world, out_world = mechanism(np.ones(n)), mechanism(np.zeros(n))
    bound = epsilon_lower_bound(in_world, out_world, confidence=0.95)
    assert 0.5 < bound.lower <= epsilon
    assert bound.lower <= bound.estimate <= bound.upper


def test_identical_distributions_give_no_evidence() -> None:
    rng = np.random.default_rng(3)
    bound = epsilon_lower_bound(rng.normal(size=2000), rng.normal(size=2000))
    assert bound.lower < 0.2


# --- auditing models ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[Data, Data, Data]:
    """100 members, 100 non-members and a disjoint reference population."""
    split = split_digits(100, test=0)
    return split.members, split.non_members, split.reference


def train_overfit(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    return bench_audit.train_overfit(x, y, epochs=200)


EPSILON, DELTA = 1.0, bench_audit.DELTA


def train_private(x: np.ndarray, y: np.ndarray) -> tuple[torch.nn.Module, float]:
    return bench_audit.train_private(x, y, epsilon=EPSILON, epochs=10, batch_size=20,
                                     accountant="rdp")


def test_the_audit_detects_leakage_from_an_overfit_model(digits: tuple[Data, Data, Data]) -> None:
    members, non_members, reference = digits
    report = pets.dp.audit(
        train_overfit(*members),
        members=members,
        non_members=non_members,
        attacks=("loss", "lira", "rmia"),
        reference=reference,
        train_fn=train_overfit,
        num_shadows=2,
    )
    assert report.auc > 0.6
    assert report.results["rmia"].auc > 0.6
    assert report.epsilon_lower_bound > 0
    assert set(report.results) == {"loss", "lira", "rmia"}
    assert set(report.tpr_at_fpr) == {0.01, 0.001}
    text = str(report)
    assert "loss" in text and "lira" in text and "rmia" in text and "eps lower bound" in text


def test_the_dp_twin_leaks_no_more_than_its_accounted_epsilon(
    digits: tuple[Data, Data, Data],
) -> None:
    members, non_members, reference = digits
    model, accounted = train_private(*members)
    assert accounted <= EPSILON * 1.01
    report = pets.dp.audit(
        model,
        members=members,
        non_members=non_members,
        attacks=("loss", "lira", "rmia"),
        reference=reference,
        train_fn=lambda x, y: train_private(x, y)[0],
        num_shadows=2,
        delta=DELTA,
        confidence=0.95,
    )
    assert report.epsilon_lower_bound <= accounted
    assert report.auc < 0.75


def test_lira_without_reference_data_says_what_it_needs(digits: tuple[Data, Data, Data]) -> None:
    members, non_members, _ = digits
    with pytest.raises(DPConfigurationError, match=r"attack 'lira' needs reference=\(X, y\)"):
        pets.dp.audit(bench_audit.make_model(), members, non_members, attacks=("lira",))


def test_rmia_without_reference_data_says_what_it_needs(digits: tuple[Data, Data, Data]) -> None:
    members, non_members, _ = digits
    with pytest.raises(DPConfigurationError, match=r"attack 'rmia' needs reference=\(X, y\)"):
        pets.dp.audit(bench_audit.make_model(), members, non_members, attacks=("rmia",))


def test_rmia_scores_a_target_the_model_favours_beyond_its_references_higher() -> None:
    """Same reference probability; the target model gives the first target more: higher score."""
    rng = np.random.default_rng(0)
    population, population_reference = rng.uniform(0.2, 0.9, 500), rng.uniform(0.2, 0.9, (2, 500))
    targets = np.array([0.99, 0.6, 0.3])
    references = np.full((2, 3), 0.6)
    scores = rmia_scores(targets, references, population, population_reference)
    assert scores[0] > scores[1] > scores[2]
    assert np.all((scores >= 0) & (scores <= 1))


def test_the_report_is_json_safe(digits: tuple[Data, Data, Data]) -> None:
    import json

    members, non_members, _ = digits
    report = pets.dp.audit(bench_audit.make_model(), members, non_members)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["results"]["loss"]["tpr_at_fpr"].keys() == {"0.01", "0.001"}
    assert data["epsilon_lower_bound"] == report.epsilon_lower_bound


def test_an_unknown_attack_lists_the_registered_ones(digits: tuple[Data, Data, Data]) -> None:
    members, non_members, _ = digits
    with pytest.raises(
        DPConfigurationError, match=r"^unknown attack 'mia'. Fix: use one of lira, loss, rmia.$"
    ):
        pets.dp.audit(bench_audit.make_model(), members, non_members, attacks=("mia",))


def test_the_report_bounds_hold_jointly_across_attacks(digits: tuple[Data, Data, Data]) -> None:
    members, non_members, _ = digits
    report = pets.dp.audit(bench_audit.make_model(), members, non_members, confidence=0.9)
    assert report.confidence == 0.9
    assert report.epsilon_interval[0] == report.epsilon_lower_bound
    assert not math.isnan(report.auc)
