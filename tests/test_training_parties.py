"""fit among real party processes: the dealer's answers of a repeated step come in one request.

Two parties and a dealer train a small model with momentum (its first step
asks the dealer for other things than the next ones); from the third step of
a batch size on, party 0 fetches the step's dealer answers in one round trip.
Shares that went out of step would give garbage weights: they must match the
plain backend's within fixed-point error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import pets

MPC_WEIGHT_ATOL = 2e-2


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    return x, np.eye(2)[(x[:, 0] - x[:, 1] > 0).astype(int)]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def _train(be: Any, rank: int) -> tuple[list[np.ndarray], list[float]]:
    """Four epochs of two steps; the dealer round trips party 0 made in each epoch."""
    x, y = _data()
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 4))
    counts: list[float] = []
    with pets.measure() as cost:
        model.fit(be.encrypt(x if rank == 0 else None, src=0),
                  be.encrypt(y if rank == 0 else None, src=0), epochs=4, lr=0.3,
                  batch_size=20, seed=2, momentum=0.5,
                  callback=lambda h: counts.append(cost.extra.get("offline_rounds", 0.0)))
    trained = model.to_torch()
    assert trained is not None
    return [p.detach().numpy() for p in trained.parameters()], counts


def _party(party: pets.Party) -> tuple[list[np.ndarray], list[float]]:
    return _train(party.backend, party.rank)


def test_prefetched_dealer_answers_train_as_plain() -> None:
    weights, counts = pets.run_parties(_party, parties=2, timeout=240)[0]
    plain, _ = _train(pets.backend("plain"), 0)
    for got, want in zip(weights, plain, strict=True):
        np.testing.assert_allclose(got, want, atol=MPC_WEIGHT_ATOL)
    per_epoch = np.diff([0.0, *counts])
    # epoch 1 asks for each answer apart; epochs 3 and 4: one request (3 messages) a step
    assert per_epoch[3] == per_epoch[2] == 2 * 3 and per_epoch[0] > 10 * per_epoch[3], per_epoch
