"""A Budget records every spend, refuses the one that would exceed it, and survives a restart."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import pets.dp
from pets.errors import BudgetExceededError, BudgetFileError


def test_basic_composition_sums_epsilons_and_deltas() -> None:
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5)
    budget.spend(0.25, label="mean")
    budget.spend(0.5, 1e-6, label="histogram")
    assert budget.spent == (0.75, 1e-6)
    assert budget.remaining == (0.25, 1e-5 - 1e-6)
    assert [entry.label for entry in budget.ledger] == ["mean", "histogram"]


def test_a_spend_that_would_exceed_raises_and_records_nothing() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    budget.spend(0.75, label="first")
    message = (
        "spending (epsilon=0.5, delta=0) ('second') would bring the total to "
        "(epsilon=1.25, delta=0) under basic composition, past the budget of "
        "(epsilon=1, delta=0) (remaining: (epsilon=0.25, delta=0)). Nothing was recorded. "
        "Fix: spend less (more noise, fewer or coarser releases), or stop releasing "
        "results about this data."
    )
    with pytest.raises(BudgetExceededError, match=f"^{re.escape(message)}$"):
        budget.spend(0.5, label="second")
    assert budget.spent == (0.75, 0.0)
    assert len(budget.ledger) == 1


def test_budget_exceeded_is_reexported_at_the_top_level() -> None:
    import pets

    assert pets.BudgetExceededError is BudgetExceededError is pets.dp.BudgetExceededError


def test_a_delta_spend_on_a_pure_epsilon_budget_is_refused() -> None:
    budget = pets.dp.Budget(epsilon=10.0)
    with pytest.raises(BudgetExceededError):
        budget.spend(0.1, 1e-9)
    assert budget.ledger == ()


def test_the_functional_api_spends_before_sampling_and_not_at_all_when_refused() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    pets.dp.laplace([1.0, 2.0], epsilon=0.6, sensitivity=1.0, budget=budget, label="sum")
    with pytest.raises(BudgetExceededError):
        pets.dp.laplace([1.0, 2.0], epsilon=0.6, sensitivity=1.0, budget=budget)
    (entry,) = budget.ledger
    assert (entry.epsilon, entry.label) == (0.6, "sum")
    assert entry.event == {"type": "laplace", "noise_multiplier": pytest.approx(1 / 0.6)}


def test_rdp_composition_of_many_gaussian_releases_costs_far_less_than_basic() -> None:
    mechanism = pets.dp.GaussianMechanism(epsilon=0.2, delta=1e-7, sensitivity=1.0)
    basic = pets.dp.Budget(epsilon=2.0, delta=1e-5)
    rdp = pets.dp.Budget(epsilon=2.0, delta=1e-5, composition="rdp")
    for _ in range(10):
        basic.spend_mechanism(mechanism)
    with pytest.raises(BudgetExceededError):
        basic.spend_mechanism(mechanism)
    for _ in range(20):
        rdp.spend_mechanism(mechanism)
    assert rdp.spent[0] < 1.0  # 20 releases, where basic composition would say 4.0
    assert rdp.spent[1] == 1e-5


def test_prv_composition_is_at_least_as_tight_as_rdp() -> None:
    rdp = pets.dp.Budget(epsilon=5.0, delta=1e-5, composition="rdp")
    prv = pets.dp.Budget(epsilon=5.0, delta=1e-5, composition="prv")
    for budget in (rdp, prv):
        budget.spend_gaussian(1.0, delta=1e-5, steps=200, sampling_rate=0.02)
    assert prv.spent[0] <= rdp.spent[0] * 1.01
    assert 0 < prv.spent[0] < 2.0


def test_accountant_compositions_never_charge_more_than_basic() -> None:
    budget = pets.dp.Budget(epsilon=1.0, composition="rdp")
    budget.spend_mechanism(pets.dp.LaplaceMechanism(0.5, 1.0))
    budget.spend(0.25)
    assert budget.spent == (0.75, 0.0)


def test_mixed_spends_under_rdp_add_what_the_accountant_cannot_compose() -> None:
    budget = pets.dp.Budget(epsilon=3.0, delta=1e-5, composition="rdp")
    budget.spend_mechanism(pets.dp.GaussianMechanism(1.0, 1e-6, 1.0))
    gaussian_only = budget.spent[0]
    budget.spend(0.5, 2e-6, label="third-party release")
    assert budget.spent[0] >= gaussian_only + 0.5
    assert budget.spent[1] == 1e-5


def test_concurrent_spends_never_exceed_and_none_is_lost() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    accepted: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(16)

    def worker(index: int) -> None:
        start.wait()
        for _ in range(20):
            try:
                budget.spend(0.01, label=f"thread {index}")
                accepted.append(index)
            except BudgetExceededError:
                refused.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 100 and len(refused) == 16 * 20 - 100
    assert len(budget.ledger) == 100
    assert budget.spent[0] <= 1.0


def test_concurrent_spends_under_rdp_are_serialised() -> None:
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5, composition="rdp")
    mechanism = pets.dp.GaussianMechanism(0.3, 1e-6, 1.0)
    results: list[bool] = []

    def worker() -> None:
        for _ in range(5):
            try:
                budget.spend_mechanism(mechanism)
                results.append(True)
            except BudgetExceededError:
                results.append(False)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(budget.ledger) == results.count(True) > 0
    assert budget.spent[0] <= 1.0
    sequential = pets.dp.Budget(epsilon=1.0, delta=1e-5, composition="rdp")
    for _ in range(results.count(True)):
        sequential.spend_mechanism(mechanism)
    with pytest.raises(BudgetExceededError):
        sequential.spend_mechanism(mechanism)  # the threads filled the budget exactly as far


def test_save_and_load_reproduce_the_ledger_exactly(tmp_path: Path) -> None:
    budget = pets.dp.Budget(epsilon=3.0, delta=1e-5, composition="rdp")
    budget.spend(0.1 + 0.2, label="awkward float")
    budget.spend_mechanism(pets.dp.GaussianMechanism(1.0, 1e-6, 2.0), label="gauss")
    budget.spend_mechanism(pets.dp.RandomizedResponse(0.5, categories="abc"))
    budget.save(tmp_path / "budget.json")
    loaded = pets.dp.Budget.load(tmp_path / "budget.json")
    assert loaded.ledger == budget.ledger
    assert loaded.spent == budget.spent
    assert (loaded.epsilon, loaded.delta, loaded.composition) == (3.0, 1e-5, "rdp")


def _saved(tmp_path: Path) -> Path:
    budget = pets.dp.Budget(epsilon=1.0)
    budget.spend(0.5, label="count")
    path = tmp_path / "budget.json"
    budget.save(path)
    return path


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    path.write_text(path.read_text()[:-40])
    with pytest.raises(BudgetFileError, match="is not valid JSON \\(truncated or corrupt"):
        pets.dp.Budget.load(path)


def test_an_edited_file_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    document = json.loads(path.read_text())
    document["content"]["ledger"][0]["epsilon"] = 0.05  # someone "frees" some budget
    path.write_text(json.dumps(document))
    with pytest.raises(
        BudgetFileError,
        match=re.escape(
            f"the checksum of the budget file {path} does not match its content: it was edited "
            "or corrupted. Fix: restore the file from a backup."
        ),
    ):
        pets.dp.Budget.load(path)


def test_a_missing_file_is_an_error_not_a_fresh_budget(tmp_path: Path) -> None:
    with pytest.raises(
        BudgetFileError, match=re.escape(f"no budget file at {tmp_path / 'nope.json'}.")
    ):
        pets.dp.Budget.load(tmp_path / "nope.json")


def test_a_file_that_is_not_a_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(BudgetFileError, match="is not a pets privacy budget file"):
        pets.dp.Budget.load(path)


def test_saving_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    pets.dp.Budget.load(path).save(path)
    # the lock file stays: deleting it would let two processes lock two different files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.json", "budget.json.lock"]


def test_an_open_budget_persists_every_spend_and_reloads_it(tmp_path: Path) -> None:
    path = tmp_path / "curator" / "budget.json"
    budget = pets.dp.Budget.open(path, epsilon=1.0)
    pets.dp.discrete_laplace([10, 12], epsilon=0.4, sensitivity=1, budget=budget)
    reopened = pets.dp.Budget.open(path, epsilon=1.0)  # e.g. after a restart
    assert reopened.spent == (0.4, 0.0)
    with pytest.raises(BudgetExceededError):
        reopened.spend(0.7)
    assert pets.dp.Budget.load(path).spent == (0.4, 0.0)


def test_a_new_budget_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with pytest.raises(BudgetFileError, match="a budget file already exists at"):
        pets.dp.Budget(epsilon=1.0, path=path)
    assert pets.dp.Budget.load(path).spent == (0.5, 0.0)


def test_opening_with_other_limits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    pets.dp.Budget.open(path, epsilon=1.0)
    with pytest.raises(BudgetFileError, match="holds limits"):
        pets.dp.Budget.open(path, epsilon=5.0)


def test_clip_values_bounds_each_value() -> None:
    assert pets.dp.clip_values([-3.0, 0.2, 7.0], -1.0, 1.0).tolist() == [-1.0, 0.2, 1.0]


def test_clip_l2_bounds_each_row_norm_and_leaves_small_rows_alone() -> None:
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [0.1, 0.0]])
    clipped = pets.dp.clip_l2(rows, 2.0)
    assert np.allclose(np.linalg.norm(clipped, axis=1), [2.0, 0.0, 0.1])
    assert np.allclose(clipped[0], [1.2, 1.6])


def test_output_perturbation_of_a_clipped_mean_with_a_budget() -> None:
    """Output perturbation: release a mean of bounded values, paying for it."""
    ages = np.random.default_rng(0).uniform(18, 90, size=5000)
    clipped = pets.dp.clip_values(ages, 0.0, 100.0)
    budget = pets.dp.Budget(epsilon=1.0)
    noisy_sum = pets.dp.laplace(clipped.sum(), epsilon=0.5, sensitivity=100.0, budget=budget)
    assert abs(float(noisy_sum) / len(ages) - ages.mean()) < 1.0
    assert budget.remaining == (0.5, 0.0)
