"""Backend "hybrid": a client and a model owner, linear layers under BFV, the rest under MPC.

Real party processes, two of them and no dealer. One run carries the
conformance cases (against the plain reference, within the mpc tolerance), a
ReLU + max-pool CNN whose predictions must equal torch's on every digit, and
what each party sees; other runs check the errors: a client whose ciphertexts
are under a key other than the one it announced, the owner dying mid-protocol,
a layer that would need the owner's weights multiplied together, and the wrong
number of parties.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest
import torch
from test_conformance import CASES
from torch import nn

import pets

TOLERANCE = 2e-3  # the mpc backend's fixed-point tolerance (16 bits)
LOGIT_TOLERANCE = 1e-2  # logits of the CNN against torch (16-bit fixed point, two layers)


def _digits(count: int) -> tuple[torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images[-count:] / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, data.target[-count:]


def _cnn() -> nn.Module:
    """ReLU + max-pool CNN on 8x8 digits (seeded; equality with torch holds for any weights)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 10)).eval()


#: the cases that multiply (triples under HE); the rest are local on shares as under mpc
HYBRID_CASES = ("matmul", "mlp", "mul_private", "square", "linear_layer", "sum_all")


def _party_run(party: pets.Party) -> dict[str, Any]:
    be = party.backend
    results: dict[str, Any] = {"describe": be.describe()}
    data = np.random.default_rng(3).uniform(-1, 1, size=(5, 6))
    operand = np.random.default_rng(5).uniform(-1, 1, size=data.shape)
    started = time.perf_counter()
    for name in HYBRID_CASES:
        x = be.encrypt(data if party.rank == 0 else None, src=0)
        results[name] = be.decrypt(CASES[name](x, operand))
    results["cases_seconds"] = time.perf_counter() - started
    images, _ = _digits(2)
    net = _cnn() if party.rank == 1 else nn.Sequential(  # the client knows the architecture
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    with pets.measure() as cost:
        model = pets.compile(net, backend=be, example_input=images[:1], weights_from=1)
        x = model.encrypt(images.numpy() if party.rank == 0 else None, src=0)
        results["logits"] = model.decrypt(model(x), to=0)
    results["cost"] = (cost.bytes_sent, cost.rounds, dict(cost.extra), cost.seconds)
    try:  # the owner's weights times its own weights: refused on both sides, before any message
        _unsupported(party)
    except pets.UnsupportedOperationError as exc:
        results["unsupported"] = str(exc)
    return results


@pytest.fixture(scope="module")
def parties() -> list[dict[str, Any]]:
    return pets.run_parties(_party_run, parties=2, backend="hybrid", timeout=180)


def test_hybrid_runs_the_conformance_cases(parties: list[dict[str, Any]]) -> None:
    plain = pets.backend("plain")
    data = np.random.default_rng(3).uniform(-1, 1, size=(5, 6))
    operand = np.random.default_rng(5).uniform(-1, 1, size=data.shape)
    for name in HYBRID_CASES:
        expected = plain.decrypt(CASES[name](plain.encrypt(data), operand))
        np.testing.assert_allclose(parties[0][name], expected, atol=TOLERANCE, rtol=0,
                                   err_msg=name)


def test_cnn_predictions_equal_torch_and_reach_the_client_only(
    parties: list[dict[str, Any]],
) -> None:
    images, _ = _digits(2)
    with torch.no_grad():
        expected = _cnn()(images).numpy()
    client, owner = parties
    np.testing.assert_allclose(client["logits"], expected, atol=LOGIT_TOLERANCE, rtol=0)
    assert np.array_equal(client["logits"].argmax(1), expected.argmax(1))
    assert owner["logits"] is None


def test_each_party_knows_its_role_and_no_dealer_ran(parties: list[dict[str, Any]]) -> None:
    client, owner = parties
    assert client["describe"]["role"] == "client (input)"
    assert owner["describe"]["role"] == "owner (weights in the clear)"
    assert client["describe"]["provider"] == "he"
    _, _, extra, _ = client["cost"]
    assert extra["offline_bytes"] > 0  # triples made by the two parties, counted apart


def _linear_layer(party: pets.Party) -> tuple[Any, Any]:
    """An input of the client's and a weight matrix of the owner's (no compile: quick)."""
    be = party.backend
    x = be.encrypt(np.ones((1, 4)) if party.rank == 0 else None, src=0)
    w = be.encrypt(np.full((4, 2), 0.5) if party.rank == 1 else None, src=1)
    return x, w


def _swapped_key(party: pets.Party) -> Any:
    from pets.bfv.parameters import ARITHMETIC
    from pets.bfv.scheme import Keys

    x, w = _linear_layer(party)
    x @ w  # keys agreed at the first product
    if party.rank == 0:
        party.backend._session.keys = Keys(ARITHMETIC)  # a client that encrypts under another key
    return party.backend.decrypt(x @ w, to=0)


def test_a_ciphertext_under_another_key_is_refused() -> None:
    with pytest.raises(pets.PartyError, match=r"party 1 failed: KeyMismatchError: the query is "
                                              r"encrypted under key \w+, not under the key"):
        pets.run_parties(_swapped_key, parties=2, backend="hybrid", timeout=60)


def _owner_dies(party: pets.Party) -> Any:
    x, w = _linear_layer(party)
    if party.rank == 1:
        os._exit(3)  # the owner goes away while the client waits for its answer
    return party.backend.decrypt(x @ w, to=0)


def test_an_owner_that_dies_mid_protocol_is_a_party_error() -> None:
    with pytest.raises(pets.PartyError, match="party 1 failed: exited with code 3"):
        pets.run_parties(_owner_dies, parties=2, backend="hybrid", timeout=10)


class _WeightsTimesWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Parameter(torch.ones(4, 4))
        self.second = nn.Parameter(torch.ones(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.first @ self.second)


def _unsupported(party: pets.Party) -> Any:
    model = pets.compile(_WeightsTimesWeights(), backend=party.backend,
                         example_input=torch.zeros(1, 4), weights_from=1)
    x = model.encrypt(np.ones((1, 4)) if party.rank == 0 else None, src=0)
    return model.decrypt(model(x), to=0)


def test_a_layer_the_hybrid_cannot_run_is_named(parties: list[dict[str, Any]]) -> None:
    for party in parties:
        assert party["unsupported"].startswith(
            "the hybrid backend cannot run matmul of two of the owner's parameters: the owner's "
            "parameters stay on the owner in the clear")


def test_hybrid_needs_exactly_two_parties() -> None:
    with pytest.raises(pets.ParameterError, match=r"backend 'hybrid' runs between exactly two "
                                                  r"parties \(the client, rank 0, and the model "
                                                  r"owner, rank 1\), not 3"):
        pets.run_parties(_party_run, parties=3, backend="hybrid")


def test_hybrid_outside_a_run_says_how_to_start_it() -> None:
    with pytest.raises(pets.ParameterError, match=r"start them with pets.run_parties\(fn, "
                                                  r"parties=2, backend='hybrid'\)"):
        pets.backend("hybrid")
