"""Federated learning measured: ``federated.train`` on digits and breast cancer, per setting.

Each row is one :func:`pets_protocols.federated.train` run (Flower's simulation
engine) or the pooled twin: the same model trained centrally on all shards for
the same epochs. Reported: test accuracy after the last round, the epsilon spent
(sample-level: the most any client spent; client-level: the federation's), the
bytes one client sends and receives per round (all stages, mean), and the median
seconds per round (the first round includes the engine's start-up). The models
are MLPs with tanh; every client runs 2 local epochs of SGD a round at ``--lr``
(default 0.1) on batches of 32, except under DP-SGD (:data:`DP_SGD`: lr 0.5,
batches of 64). ``docs/federated.md`` holds a run's tables.

    python -m pets_benchmarks.federated --quick          # 3 rounds, 3 and 10 clients
    python -m pets_benchmarks.federated --datasets digits --clients 10 --splits label
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["SETTINGS", "Row", "datasets", "format_table", "main", "measure", "pooled"]


@dataclass(frozen=True)
class Row:
    dataset: str
    setting: str
    clients: int
    split: str
    rounds: int
    accuracy: float
    epsilon: float | None
    bytes_per_round: float | None
    seconds_per_round: float
    dropouts: int = 0


def _scaled(x: Any) -> Any:
    return ((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)).astype(np.float32)


def datasets() -> dict[str, tuple[Any, Any, Any, Any, Callable[[], Any]]]:
    """name -> (x_train, y_train, x_test, y_test, a fresh model)."""
    import torch
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split

    def mlp(inputs: int, hidden: int, classes: int) -> Callable[[], Any]:
        def make() -> Any:
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, classes))
        return make

    out = {}
    for name, loader, (inputs, hidden, classes) in (
        ("digits", load_digits, (64, 32, 10)), ("breast cancer", load_breast_cancer, (30, 16, 2)),
    ):
        bunch = loader()
        x = (bunch.data / 8.0 - 1.0).astype(np.float32) if name == "digits" else _scaled(bunch.data)
        xtr, xte, ytr, yte = train_test_split(x, bunch.target, test_size=0.25, random_state=0,
                                              stratify=bunch.target)
        out[name] = (xtr, ytr, xte, yte, mlp(inputs, hidden, classes))
    return out


#: DP-SGD's noise is smaller on larger batches, and its clipped steps want a larger rate
DP_SGD = {"lr": 0.5, "batch_size": 64}


def _settings() -> dict[str, dict[str, Any]]:
    from pets_protocols import federated

    return {
        "FedAvg (Flower)": {"aggregation": "plain"},
        "sample-level DP eps 4": {"aggregation": "plain", "dp": federated.SampleDP(4.0),
                                  **DP_SGD},
        "client-level DP eps 8": {"aggregation": "plain", "dp": federated.ClientDP(8.0)},
        "SecAgg+": {"aggregation": "secagg+"},
        "SecAgg+ + sample-level DP eps 4": {"aggregation": "secagg+",
                                            "dp": federated.SampleDP(4.0), **DP_SGD},
        "CKKS": {"aggregation": "ckks"},
    }


SETTINGS = ("FedAvg (Flower)", "sample-level DP eps 4", "client-level DP eps 8", "SecAgg+",
            "SecAgg+ + sample-level DP eps 4", "CKKS", "pooled")


def pooled(dataset: str, rounds: int, local_epochs: int, lr: float, batch_size: int) -> Row:
    """The same model trained centrally on every record for ``rounds * local_epochs`` epochs."""
    from pets_protocols.federated.local import (
        LocalPlan,
        fit_locally,
        get_arrays,
        predict,
        set_arrays,
    )

    xtr, ytr, xte, yte, make = datasets()[dataset]
    model = make()
    plan = LocalPlan(rounds=rounds, local_epochs=local_epochs, lr=lr, batch_size=batch_size,
                     seed=0)
    arrays, durations = get_arrays(model), []
    for number in range(1, rounds + 1):
        started = time.perf_counter()
        arrays, _ = fit_locally(model, arrays, xtr, ytr, plan, client=0, server_round=number)
        durations.append(time.perf_counter() - started)
    set_arrays(model, arrays)
    accuracy = float(np.mean(predict(model, xte)[0] == yte))
    return Row(dataset, "pooled", 1, "-", rounds, accuracy, None, None,
               statistics.median(durations))


def measure(dataset: str, setting: str, *, clients: int, split: str, rounds: int,
            local_epochs: int = 2, lr: float = 0.1, batch_size: int = 32,
            drop_one: bool = False) -> Row:
    """One federated run; ``drop_one``: a different client drops out of every round."""
    from pets_protocols import federated

    if setting == "pooled":
        return pooled(dataset, rounds, local_epochs, lr, batch_size)
    xtr, ytr, xte, yte, make = datasets()[dataset]
    parts = (federated.label_skew(xtr, ytr, clients) if split == "label"
             else federated.iid(xtr, ytr, clients))
    drops = {r: [(r - 1) % clients] for r in range(1, rounds + 1)} if drop_one else None
    options = {"lr": lr, "batch_size": batch_size, **_settings()[setting]}
    result = federated.train(make(), parts, rounds=rounds, local_epochs=local_epochs,
                             evaluate=(xte, yte), drops=drops, **options)
    history = result.history
    epsilon = (max(result.epsilon.values()) if isinstance(result.epsilon, dict)
               else result.epsilon)
    return Row(dataset, setting, clients, split, rounds, float(result.accuracy or 0.0),
               epsilon, statistics.mean(h.bytes_down + h.bytes_up for h in history),
               statistics.median(h.seconds for h in history),
               sum(len(h.dropouts) for h in history))


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| dataset | setting | clients | split | accuracy | epsilon | bytes / client / round "
             "| s / round | dropouts |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        epsilon = "-" if row.epsilon is None else f"{row.epsilon:.2f}"
        sent = "-" if row.bytes_per_round is None else f"{row.bytes_per_round:,.0f}"
        lines.append(f"| {row.dataset} | {row.setting} | {row.clients} | {row.split} | "
                     f"{row.accuracy:.3f} | {epsilon} | {sent} | {row.seconds_per_round:.2f} | "
                     f"{row.dropouts} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds, 3 and 10 clients")
    parser.add_argument("--datasets", default="digits,breast cancer")
    parser.add_argument("--clients", default="3,10,100")
    parser.add_argument("--splits", default="iid,label")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1,
                        help="SGD rate of the settings without DP-SGD (those use DP_SGD's)")
    parser.add_argument("--drop-one", action="store_true",
                        help="a different client drops out of every round")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    counts = [3, 10] if args.quick else [int(c) for c in args.clients.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        for clients in counts:
            for split in args.splits.split(","):
                for setting in args.settings.split(","):
                    first = (clients, split) == (counts[0], args.splits.split(",")[0])
                    if setting == "pooled" and not first:  # one per dataset: no clients
                        continue
                    row = measure(dataset, setting, clients=clients, split=split,
                                  rounds=rounds, drop_one=args.drop_one, lr=args.lr)
                    print(format_table([row]).splitlines()[-1], flush=True)
                    rows.append(row)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
