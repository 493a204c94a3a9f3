"""The "mpc" backend between real party processes (pets.run_parties, a TTP dealer).

One run of two parties carries several checks (each party process costs
seconds to start): secret-weight inference between a client and a model
owner, joint training on horizontally and vertically split data against
pooled plaintext training, DP noise added as shares, the rounds a training
step costs, and the errors of mismatched ``encrypt`` calls. Under MPC the
numbers are 16-bit fixed point: outputs within ``MPC_ATOL`` of torch.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import pets

MPC_ATOL = 2e-2
#: CrypTen's own softmax cross-entropy step of a 30->2 linear model on 150 samples
#: takes 130 rounds per party (2 parties, its defaults; see pets bench); fit must take half
CRYPTEN_ROUNDS_PER_STEP = 130


def _cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x[:300], y[:300]


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(30, 2)


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray, be: Any) -> float:
    revealed = model.decrypt(model(be.encrypt(x if be.rank == 0 else None, src=0)))
    return float((revealed.argmax(axis=1) == y).mean())


def _two_party_checks(party: pets.Party) -> dict[str, Any]:
    be = party.backend
    rank = party.rank
    results: dict[str, Any] = {}

    # secret weights: party 1 owns the model, party 0 the input; only party 0 learns the output
    torch.manual_seed(1)
    owned = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1))
    mine = owned if rank == 1 else nn.Sequential(  # party 0 knows the architecture only
        nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1))
    x = np.random.default_rng(2).normal(size=(5, 4))
    model = pets.compile(mine, backend=be, example_input=torch.zeros(5, 4), weights_from=1)
    out = model.decrypt(model(model.encrypt(x if rank == 0 else None, src=0)), to=0)
    with torch.no_grad():
        results["expected"] = owned(torch.tensor(x, dtype=torch.float32)).numpy()
    results["secret_weights_output"] = out

    # joint training: horizontal (rows split) and vertical (columns split)
    data, labels = _cancer()
    onehot = np.eye(2)[labels]
    rows = np.array_split(np.arange(len(data)), 2)
    cols = np.array_split(np.arange(30), 2)
    horizontal_x = pets.concat(
        [be.encrypt(data[rows[r]] if r == rank else None, src=r) for r in range(2)], axis=0)
    horizontal_y = pets.concat(
        [be.encrypt(onehot[rows[r]] if r == rank else None, src=r) for r in range(2)], axis=0)
    vertical_x = pets.concat(
        [be.encrypt(data[:, cols[r]] if r == rank else None, src=r) for r in range(2)], axis=1)
    vertical_y = be.encrypt(onehot if rank == 1 else None, src=1)  # party 1 holds the labels
    for split, (px, py) in {"horizontal": (horizontal_x, horizontal_y),
                            "vertical": (vertical_x, vertical_y)}.items():
        model = pets.compile(_classifier(), backend=be, example_input=torch.zeros(2, 30))
        with pets.measure() as cost:
            history = model.fit(px, py, epochs=2, lr=0.5, batch_size=150, seed=5)
        results[f"{split}_accuracy"] = _accuracy(model, data, labels, be)
        results[f"{split}_rounds_per_step"] = cost.rounds / history.steps

    # DP release: each party adds its own noise draw to its share
    total = be.encrypt(np.array([100.0, 200.0]) if rank == 0 else None, src=0)
    budget = pets.dp.Budget(epsilon=2.0)
    results["released"] = pets.dp.release(
        total, mechanism=pets.dp.LaplaceMechanism(1.0, 1.0), budget=budget)
    results["budget_spent"] = budget.spent[0]

    # encrypt misuse: both parties pass data for src=0
    try:
        be.encrypt(np.ones(3), src=0)
    except pets.PartyError as exc:
        results["both_passed_data"] = str(exc)
    return results


@pytest.fixture(scope="module")
def two_parties() -> list[dict[str, Any]]:
    return pets.run_parties(_two_party_checks, parties=2, timeout=120)


def _torch_pooled_accuracy() -> float:
    """The same model and SGD steps trained on the pooled plaintext data."""
    data, labels = _cancer()
    be = pets.backend("plain")
    model = pets.compile(_classifier(), backend=be, example_input=torch.zeros(2, 30))
    model.fit(be.encrypt(data), be.encrypt(np.eye(2)[labels]), epochs=2, lr=0.5,
              batch_size=150, seed=5)
    return float((model.predict(data).argmax(axis=1) == labels).mean())


def test_secret_weights_output_reaches_the_client_only(two_parties: list[dict[str, Any]]) -> None:
    client, owner = two_parties
    np.testing.assert_allclose(client["secret_weights_output"], client["expected"], atol=MPC_ATOL)
    assert owner["secret_weights_output"] is None


@pytest.mark.parametrize("split", ["horizontal", "vertical"])
def test_joint_training_matches_pooled_plaintext_training(
    two_parties: list[dict[str, Any]], split: str
) -> None:
    pooled = _torch_pooled_accuracy()
    for party in two_parties:
        assert abs(party[f"{split}_accuracy"] - pooled) <= 0.02, (split, pooled)


def test_a_training_step_takes_at_most_half_of_crypten_rounds(
    two_parties: list[dict[str, Any]],
) -> None:
    for party in two_parties:
        assert party["horizontal_rounds_per_step"] <= CRYPTEN_ROUNDS_PER_STEP / 2


def test_dp_noise_is_added_as_shares_and_charged(two_parties: list[dict[str, Any]]) -> None:
    first, second = two_parties
    np.testing.assert_array_equal(first["released"], second["released"])  # one joint reveal
    assert np.all(np.abs(first["released"] - [100.0, 200.0]) > 1e-3)  # noise is there
    assert np.all(np.abs(first["released"] - [100.0, 200.0]) < 60.0)  # Laplace(1) twice
    assert first["budget_spent"] == pytest.approx(1.0)


def test_both_parties_passing_data_is_refused(two_parties: list[dict[str, Any]]) -> None:
    for party in two_parties:
        assert party["both_passed_data"] == (
            "encrypt(..., src=0): parties [0, 1] passed data; exactly party 0 passes its data "
            "and every other party passes None"
        )


def test_mpc_outside_a_run_refuses_several_parties() -> None:
    with pytest.raises(pets.ParameterError, match=re.escape(
        "pets.backend('mpc', parties=3) outside a multi-party run: start the parties with "
        "pets.run_parties(fn, parties=3)"
    )):
        pets.backend("mpc", parties=3)
