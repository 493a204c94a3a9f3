"""Joint training and secret-shared inference among N organisations, on the public pets API.

The parties (each its own process, :func:`pets.run_parties`, a TTP dealer):

* every party holds some rows of a data set (a horizontal split) and nobody
  may see the others' rows;
* together they train one model on all rows under MPC: data, labels,
  weights and gradients stay secret-shared; no party (nor the dealer) sees any
  of them; the trained weights stay shared;
* party 0 then queries the shared model on its own test inputs; only party 0
  learns the predictions.

What each party sees: its own rows, the public model architecture and
training settings, the number of rows of every party (shapes travel), and the
predictions it asked for (party 0). Collusion of any party with the dealer,
or of all parties, reveals everything; the parties are assumed to follow the
protocol (CrypTen's semi-honest model).

>>> # result = run(parties=3)   # starts 3 party processes and a dealer
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pets

__all__ = ["SETTINGS", "JointTrainingResult", "cancer_split", "fit_options", "run"]


@dataclass
class JointTrainingResult:
    """What the run measured, from party 0 and the pooled plaintext reference."""

    parties: int
    rows_per_party: list[int]
    mpc_accuracy: float
    pooled_accuracy: float
    seconds: float
    bytes_per_party: list[int] = field(default_factory=list)
    rounds_per_party: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        mib = ", ".join(f"{b / 2**20:.1f}" for b in self.bytes_per_party)
        rounds = self.rounds_per_party[0] if self.rounds_per_party else 0
        return (
            f"{self.parties} parties holding {self.rows_per_party} rows trained one model "
            f"under MPC in {self.seconds:.1f} s (processes included)\n"
            f"  accuracy on held-out rows (party 0's private queries, revealed to party 0 only):"
            f" MPC {self.mpc_accuracy:.4f}, plaintext training on the pooled data "
            f"{self.pooled_accuracy:.4f} "
            f"({100 * (self.mpc_accuracy - self.pooled_accuracy):+.1f} points)\n"
            f"  training: each party sent {mib} MiB in {rounds} rounds"
        )


def cancer_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised breast-cancer rows: train (426) and test (143), labels as integers."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def _model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


#: training settings every party uses (public); ``dp_epsilon`` (if set) trains with DP-SGD
SETTINGS: dict[str, Any] = {"epochs": 4, "lr": 0.3, "batch_size": 128, "seed": 11}


def fit_options(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as ``fit`` keywords: ``dp_epsilon`` becomes ``dp=pets.dp.SGD(...)``."""
    import pets.dp

    options = dict(settings)
    epsilon = options.pop("dp_epsilon", None)
    if epsilon is not None:
        options["dp"] = pets.dp.SGD(epsilon=float(epsilon), delta=1e-5, max_grad_norm=1.0)
    return options


def _party(party: pets.Party, settings: dict[str, Any]) -> dict[str, Any]:
    """One party's program: share its rows, train jointly, serve party 0's queries."""
    import torch

    be = party.backend
    rank = party.rank
    x_train, y_train, x_test, y_test = cancer_split()
    rows = np.array_split(np.arange(len(x_train)), party.parties)[rank]  # my rows only
    mine_x, mine_y = x_train[rows], np.eye(2)[y_train[rows]]
    model = pets.compile(_model(), backend=be, example_input=torch.zeros(2, 30))
    with pets.measure("joint training") as cost:
        x = pets.concat([be.encrypt(mine_x if r == rank else None, src=r)
                         for r in range(party.parties)], axis=0)
        y = pets.concat([be.encrypt(mine_y if r == rank else None, src=r)
                         for r in range(party.parties)], axis=0)
        model.fit(x, y, **fit_options(settings))
    # party 0 asks the shared model about its test rows; only party 0 learns the answers
    query = model.encrypt(x_test if rank == 0 else None, src=0)
    answers = model.decrypt(model(query), to=0)
    accuracy = None if answers is None else float((answers.argmax(axis=1) == y_test).mean())
    return {"rows": len(rows), "seconds": cost.seconds, "bytes": cost.bytes_sent,
            "rounds": cost.rounds, "query_accuracy": accuracy}


def pooled_accuracy(settings: dict[str, Any] | None = None) -> float:
    """The same model and SGD trained in the clear on all rows (the reference)."""
    x_train, y_train, x_test, y_test = cancer_split()
    be = pets.backend("plain")
    model = pets.compile(_model(), backend=be, example_input=np.zeros((2, 30)))
    model.fit(be.encrypt(x_train), be.encrypt(np.eye(2)[y_train]),
              **fit_options(settings or SETTINGS))
    return float((model.predict(x_test).argmax(axis=1) == y_test).mean())


def run(*, parties: int = 3, timeout: float = 600.0,
        settings: dict[str, Any] | None = None) -> JointTrainingResult:
    """Start ``parties`` processes and the dealer, train jointly, query; compare with pooled."""
    chosen = dict(settings or SETTINGS)
    start = time.perf_counter()
    results = pets.run_parties(_party, parties=parties, timeout=timeout, args=(chosen,))
    seconds = time.perf_counter() - start
    return JointTrainingResult(
        parties=parties,
        rows_per_party=[r["rows"] for r in results],
        mpc_accuracy=float(results[0]["query_accuracy"]),
        pooled_accuracy=pooled_accuracy(chosen),
        seconds=seconds,
        bytes_per_party=[r["bytes"] for r in results],
        rounds_per_party=[r["rounds"] for r in results],
    )
