"""A budget kept in a file holds across handles and processes, and refuses forged files."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import pets.dp
from pets.dp import _budget_file
from pets.errors import BudgetExceededError, BudgetFileError, DPConfigurationError

SPENDER = """
import sys
import pets.dp
from pets.errors import BudgetExceededError

path, start = sys.argv[1], sys.argv[2]
budget = pets.dp.Budget.open(path, epsilon=1.0)
while not __import__("os").path.exists(start):
    pass
accepted = 0
for _ in range(10):
    try:
        budget.spend(0.1, label="process")
        accepted += 1
    except BudgetExceededError:
        pass
print(accepted)
"""


def test_two_handles_on_one_file_cannot_both_spend_the_same_budget(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    first = pets.dp.Budget.open(path, epsilon=1.0)
    second = pets.dp.Budget.open(path, epsilon=1.0)
    first.spend(0.8, label="first")
    total = re.escape("would bring the total to (epsilon=1.6")
    with pytest.raises(BudgetExceededError, match=total):
        second.spend(0.8, label="second")
    assert second.spent == (0.8, 0.0)  # the refused handle caught up with the file
    assert [entry.label for entry in pets.dp.Budget.load(path).ledger] == ["first"]


def race(script: str, path: Path, processes: int = 4) -> list[int]:
    """Run ``script`` in ``processes`` processes started together; what each printed."""
    start = path.with_name("start")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    start.touch()  # all of them race from here
    counts = [int(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)
    return counts


def test_four_processes_spend_exactly_the_budget_and_no_more(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    pets.dp.Budget.open(path, epsilon=1.0)
    accepted = race(SPENDER, path)
    assert sum(accepted) == 10
    loaded = pets.dp.Budget.load(path)
    assert len(loaded.ledger) == 10
    assert loaded.spent == (1.0, 0.0)


def test_a_budget_file_rolled_back_under_an_open_handle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    budget = pets.dp.Budget.open(path, epsilon=1.0)
    budget.spend(0.25)
    backup = path.read_text()
    budget.spend(0.25)
    path.write_text(backup)  # someone "restores" the file to free budget
    with pytest.raises(BudgetFileError, match="no longer holds the 2 spends this budget recorded"):
        budget.spend(0.1)


def test_a_removed_budget_file_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    budget = pets.dp.Budget.open(path, epsilon=1.0)
    budget.spend(0.25)
    path.unlink()
    with pytest.raises(BudgetFileError, match="was removed while this budget was using it"):
        budget.spend(0.1)
    assert not path.exists()


def test_refresh_sees_the_spends_of_other_handles(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    mine = pets.dp.Budget.open(path, epsilon=2.0, delta=1e-5, composition="rdp")
    theirs = pets.dp.Budget.open(path, epsilon=2.0, delta=1e-5, composition="rdp")
    theirs.spend_mechanism(pets.dp.GaussianMechanism(0.5, 1e-6, 1.0))
    assert mine.spent == (0.0, 0.0)
    mine.refresh()
    assert mine.spent == theirs.spent
    assert mine.ledger == theirs.ledger


def test_saving_a_budget_to_its_own_file_keeps_the_spends_of_other_handles(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    mine = pets.dp.Budget.open(path, epsilon=1.0)
    pets.dp.Budget.open(path, epsilon=1.0).spend(0.5, label="theirs")
    mine.save(path)
    assert [entry.label for entry in pets.dp.Budget.load(path).ledger] == ["theirs"]


def test_a_spend_waits_for_the_lock_and_gives_up_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "budget.json"
    budget = pets.dp.Budget.open(path, epsilon=1.0)
    monkeypatch.setattr(_budget_file, "LOCK_TIMEOUT", 0.2)
    errors: list[BaseException] = []
    with _budget_file.locked(path):  # e.g. another process stuck mid-spend
        worker = threading.Thread(target=lambda: _spend_into(budget, errors))
        worker.start()
        worker.join()
    assert len(errors) == 1 and isinstance(errors[0], BudgetFileError)
    assert "another process has held the lock on" in str(errors[0])
    assert budget.ledger == ()
    budget.spend(0.1)  # once released, spending works
    assert budget.spent == (0.1, 0.0)


def _spend_into(budget: pets.dp.Budget, errors: list[BaseException]) -> None:
    try:
        budget.spend(0.1)
    except BaseException as exc:
        errors.append(exc)


# --- forged or corrupt files ------------------------------------------------------------


def _forge(path: Path, content: dict[str, Any]) -> Path:
    """A budget file whose checksum matches ``content``: what a forger can always make."""
    digest = hashlib.sha256(_budget_file.canonical(content).encode()).hexdigest()
    document = {"format": "pets.dp.Budget", "version": 1, "sha256": digest, "content": content}
    path.write_text(json.dumps(document))
    return path


def _entry(event: dict[str, Any], epsilon: float = 0.1, delta: float = 0.0) -> dict[str, Any]:
    return {"epsilon": epsilon, "delta": delta, "label": None, "event": event}


def _content(ledger: list[Any], composition: str = "basic") -> dict[str, Any]:
    return {"epsilon": 1.0, "delta": 1e-5, "composition": composition, "ledger": ledger}


def test_a_negative_ledger_entry_is_refused(tmp_path: Path) -> None:
    event = {"type": "epsilon_delta", "epsilon": -4.75, "delta": 0.0}
    path = _forge(tmp_path / "b.json", _content([_entry(event, epsilon=-4.75)]))
    with pytest.raises(
        BudgetFileError,
        match=re.escape(
            f"the budget file {path} is malformed: a ledger entry's epsilon must be finite and "
            ">= 0, got -4.75. Fix: restore the file from a backup."
        ),
    ):
        pets.dp.Budget.load(path)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_in_a_budget_file_are_refused(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        '{"format": "pets.dp.Budget", "version": 1, "sha256": "0", '
        f'"content": {{"epsilon": {constant}, "delta": 0, "composition": "basic", "ledger": []}}}}'
    )
    with pytest.raises(BudgetFileError, match="is not valid JSON \\(truncated or corrupt"):
        pets.dp.Budget.load(path)


def test_deeply_nested_json_is_refused_not_a_recursion_crash(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BudgetFileError, match="is not valid JSON"):
        pets.dp.Budget.load(path)


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"type": "gaussian"}, "a gaussian event has the fields ['noise_multiplier'], got []"),
        ({"type": "gaussian", "noise_multiplier": "x"}, "noise_multiplier must be a finite"),
        ({"type": "gaussian", "noise_multiplier": -1.0}, "noise_multiplier must be a finite"),
        (
            {"type": "poisson_sampled", "sampling_probability": 2.0,
             "event": {"type": "gaussian", "noise_multiplier": 1.0}},
            "sampling_probability must be a finite number in [0, 1]",
        ),
        ({"type": "teleport"}, "unknown privacy event type 'teleport'"),
        (
            {"type": "self_composed", "count": 10**12,
             "event": {"type": "gaussian", "noise_multiplier": 1.0}},
            "count must be an integer in [1, 1000000000], got 1000000000000",
        ),
        (
            {"type": "self_composed", "count": 1.5,
             "event": {"type": "gaussian", "noise_multiplier": 1.0}},
            "count must be an integer",
        ),
    ],
)
@pytest.mark.parametrize("composition", ["rdp", "prv"])
def test_malformed_privacy_events_are_refused_before_any_accountant_sees_them(
    tmp_path: Path, event: dict[str, Any], problem: str, composition: str
) -> None:
    path = _forge(tmp_path / "b.json", _content([_entry(event)], composition))
    with pytest.raises(BudgetFileError, match=re.escape(problem)):
        pets.dp.Budget.load(path)


def test_events_nested_past_the_limit_are_refused(tmp_path: Path) -> None:
    event: dict[str, Any] = {"type": "gaussian", "noise_multiplier": 1.0}
    for _ in range(20):
        event = {"type": "self_composed", "count": 1, "event": event}
    path = _forge(tmp_path / "b.json", _content([_entry(event)], "rdp"))
    with pytest.raises(BudgetFileError, match="privacy events nest more than 8 deep"):
        pets.dp.Budget.load(path)


def test_a_huge_loss_under_prv_is_accounted_without_exhausting_memory(tmp_path: Path) -> None:
    """PLD memory grows with the loss: at a million Gaussian steps RDP answers instead."""
    event = {"type": "self_composed", "count": 10**6,
             "event": {"type": "gaussian", "noise_multiplier": 1.0}}
    budget = pets.dp.Budget(epsilon=10.0, delta=1e-5, composition="prv")
    budget.spend_event(event, epsilon=0.5, delta=0.0, label="claims far less than it costs")
    assert budget.spent == (0.5, 0.0)  # basic composition of the claimed cost is the smaller


def test_unknown_or_extra_fields_in_a_budget_file_are_refused(tmp_path: Path) -> None:
    content = {**_content([]), "bonus": 1}
    with pytest.raises(BudgetFileError, match="must hold exactly epsilon, delta, composition"):
        pets.dp.Budget.load(_forge(tmp_path / "b.json", content))
    entry = {**_entry({"type": "laplace", "noise_multiplier": 1.0}), "extra": True}
    with pytest.raises(BudgetFileError, match="a ledger entry is an object with epsilon, delta"):
        pets.dp.Budget.load(_forge(tmp_path / "c.json", _content([entry])))


def test_a_spend_with_a_malformed_event_is_refused_and_not_recorded() -> None:
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5, composition="rdp")
    with pytest.raises(DPConfigurationError, match="the privacy event of this spend is malformed"):
        budget.spend_event({"type": "gaussian", "noise_multiplier": 0.0}, epsilon=0.1, delta=0.0)
    assert budget.ledger == ()


# --- messages ------------------------------------------------------------------------------


def test_a_gaussian_spend_on_a_budget_without_delta_says_to_give_it_a_delta() -> None:
    budget = pets.dp.Budget(epsilon=1.0)
    message = (
        "Nothing was recorded. Fix: this budget has delta=0 (pure epsilon-DP), which no spend "
        "with a delta (Gaussian noise, DP-SGD) fits. Give the budget a delta, e.g. "
        "pets.dp.Budget(epsilon=1, delta=1e-5)"
    )
    with pytest.raises(BudgetExceededError, match=re.escape(message)):
        pets.dp.gaussian([1.0], epsilon=0.5, delta=1e-6, sensitivity=1.0, budget=budget)


def test_running_out_of_delta_says_that_delta_is_what_ran_out() -> None:
    budget = pets.dp.Budget(epsilon=10.0, delta=1e-6)
    with pytest.raises(BudgetExceededError, match="Fix: the delta limit is what runs out"):
        budget.spend(0.1, 1e-5)


# --- load, spend, save: a copy saved back onto a file that moved on -----------------------

LOAD_SPEND_SAVE = """
import sys, os
import pets.dp
from pets.errors import BudgetExceededError

path, start = sys.argv[1], sys.argv[2]
while not os.path.exists(start):
    pass
released = 0
for _ in range(10):
    budget = pets.dp.Budget.load(path)
    try:
        budget.spend(0.05, label="process")
        budget.save(path)  # release only once the save is accepted
    except BudgetExceededError:
        continue
    released += 1
print(released)
"""


def test_load_spend_save_in_four_processes_never_overspends(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    pets.dp.Budget(epsilon=1.0).save(path)
    released = race(LOAD_SPEND_SAVE, path)
    final = pets.dp.Budget.load(path)
    assert len(final.ledger) == sum(released)  # no saved spend was overwritten
    assert sum(released) * 0.05 <= 1.0 + 1e-9
    assert final.spent[0] <= 1.0 + 1e-9


def two_copies(path: Path, theirs_spend: float) -> pets.dp.Budget:
    """Two copies loaded from a fresh file; the other one spends and saves. Returns mine."""
    pets.dp.Budget(epsilon=1.0).save(path)
    mine, theirs = pets.dp.Budget.load(path), pets.dp.Budget.load(path)
    theirs.spend(theirs_spend, label="theirs")
    theirs.save(path)
    return mine


def test_saving_a_copy_onto_a_grown_file_merges_the_spends(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    mine = two_copies(path, 0.25)
    mine.spend(0.25, label="mine")
    mine.save(path)
    assert [entry.label for entry in pets.dp.Budget.load(path).ledger] == ["theirs", "mine"]
    assert mine.spent == (0.5, 0.0)


def test_saving_a_copy_whose_spends_no_longer_fit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    mine = two_copies(path, 0.75)
    mine.spend(0.5, label="mine")
    with pytest.raises(
        BudgetExceededError,
        match=r"saving to .* would bring its total to \(epsilon=1\.25.*Nothing was written",
    ):
        mine.save(path)
    assert [entry.label for entry in pets.dp.Budget.load(path).ledger] == ["theirs"]


def test_saving_onto_a_file_that_went_backwards_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    budget = pets.dp.Budget(epsilon=1.0)
    budget.spend(0.25)
    budget.save(path)
    backup = path.read_text()
    budget.spend(0.25)
    budget.save(path)
    path.write_text(backup)  # someone "restores" the file to free budget
    budget.spend(0.25)
    with pytest.raises(BudgetFileError, match=r"no longer holds 1 spend\(s\) it held"):
        budget.save(path)
    assert len(pets.dp.Budget.load(path).ledger) == 1


def test_saving_over_another_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    pets.dp.Budget(epsilon=1.0).save(path)
    with pytest.raises(BudgetFileError, match=r"holds another budget .*saving would replace"):
        pets.dp.Budget(epsilon=2.0).save(path)


def test_identical_spends_are_told_apart_by_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    mine = pets.dp.Budget.open(path, epsilon=1.0)
    mine.spend(0.1, label="query")
    backup = path.read_text()
    mine.spend(0.1, label="query")
    path.write_text(backup)  # rolled back ...
    pets.dp.Budget.open(path, epsilon=1.0).spend(0.1, label="query")  # ... and re-extended
    with pytest.raises(BudgetFileError, match="no longer holds the 2 spends this budget recorded"):
        mine.spend(0.1, label="query")
    first, second = pets.dp.Budget.load(path).ledger
    assert first.id != second.id and (first.epsilon, first.label) == (second.epsilon, second.label)


def test_a_ledger_with_one_id_twice_is_refused(tmp_path: Path) -> None:
    event = {"type": "epsilon_delta", "epsilon": 0.1, "delta": 0.0}
    twice = [{**_entry(event), "id": "abc"}, {**_entry(event), "id": "abc"}]
    path = _forge(tmp_path / "b.json", _content(twice))
    with pytest.raises(BudgetFileError, match="two ledger entries share one id"):
        pets.dp.Budget.load(path)
