"""The bench rows: plain FedAvg, DP, DP with encrypted aggregation, and pooled training.

One call runs every federated mode on both data splits in a single Flower
simulation (same clients, same model, same rounds) and trains the same model
centrally on the pooled shards for the same total epochs. Each row gives the
test accuracy after the last round, the median seconds per round (train and
evaluate phases, measured on the server), the bytes each client received and
sent per round, and the epsilon each client spent (at delta = 1e-5).

>>> # rows = compare(quick=True)        # about 20 s on 2 cores
>>> # print(format_rows(rows))
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pets_protocols.federated import packing
from pets_protocols.federated.apps import MODEL_SIZES
from pets_protocols.federated.data import load_digits, split_indices
from pets_protocols.federated.model import accuracy, flatten, init_parameters, train
from pets_protocols.federated.simulation import MODES, default_privacy, simulate

__all__ = ["SETTINGS", "FederatedReport", "Row", "compare", "format_rows", "pooled_row",
           "run_federated"]

SETTINGS = {
    "fedavg": "FedAvg (Flower's own)",
    "dp": "DP (noise shares, in the clear)",
    "dp+he": "DP + encrypted aggregation",
    "pooled": "pooled (central training)",
}


@dataclass(frozen=True)
class Row:
    """One line of the comparison; ``None`` where a measure does not apply."""

    setting: str
    split: str
    clients: int
    rounds: int
    accuracy: float
    seconds_per_round: float
    bytes_down: float | None
    bytes_up: float | None
    epsilon: float | None
    epsilon_one_update: float | None
    protect_seconds: float | None = None
    aggregate_seconds: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pooled_row(*, split: str, clients: int, rounds: int, local_epochs: int, lr: float) -> Row:
    """The same model trained centrally on every shard for ``rounds * local_epochs`` epochs."""
    data = load_digits()
    params = init_parameters(MODEL_SIZES, seed=0)
    durations = []
    for number in range(1, rounds + 1):
        started = time.perf_counter()
        params, _ = train(params, data.x_train, data.y_train, epochs=local_epochs, lr=lr,
                          seed=number)
        durations.append(time.perf_counter() - started)
    shard_bytes = max(
        data.x_train[index].nbytes + data.y_train[index].nbytes
        for index in split_indices(data.y_train, clients, split)
    )
    return Row(
        setting=SETTINGS["pooled"], split=split, clients=clients, rounds=rounds,
        accuracy=accuracy(params, data.x_test, data.y_test),
        seconds_per_round=statistics.median(durations), bytes_down=None, bytes_up=None,
        epsilon=None, epsilon_one_update=None,
        note=f"each client ships its raw shard once (up to {shard_bytes:,} bytes)",
    )


def compare(
    *,
    quick: bool = False,
    clients: int = 3,
    rounds: int | None = None,
    epsilon: float = 8.0,
    splits: Sequence[str] = ("iid", "label"),
    local_epochs: int = 2,
    lr: float = 0.1,
) -> list[Row]:
    """Every federated mode and pooled training, per split, from one run.

    ``quick`` runs 2 rounds instead of 5. ``epsilon`` is each client's total budget
    (delta 1e-5) over all rounds, for the DP modes.
    """
    rounds = rounds or (2 if quick else 5)
    privacy = default_privacy(clients, rounds, epsilon)
    keys = packing.make_keys()
    runs = simulate(modes=MODES, splits=splits, clients=clients, rounds=rounds,
                    privacy=privacy, keys=keys, local_epochs=local_epochs, lr=lr)
    size = flatten(init_parameters(MODEL_SIZES)).size
    layout = packing.layout_for(keys, size)
    notes = {
        "fedavg": f"{size:,} float64 parameters, weighted by examples",
        "dp": f"clip {privacy.clip_norm:g}, noise in {privacy.noise_clients} shares; "
              "the server sees each update",
        "dp+he": f"{layout.ciphertexts} CKKS ciphertext(s) of {layout.slots} slots per update; "
                 "the server sees none",
    }
    rows = []
    for split in splits:
        for mode in MODES:
            run = runs[mode, split]
            rows.append(Row(
                setting=SETTINGS[mode], split=split, clients=clients, rounds=rounds,
                accuracy=run.final_accuracy, seconds_per_round=run.seconds_per_round,
                bytes_down=run.bytes_down, bytes_up=run.bytes_up, epsilon=run.epsilon,
                epsilon_one_update=run.epsilon_one_update, protect_seconds=run.protect_seconds,
                aggregate_seconds=run.aggregate_seconds, note=notes[mode],
            ))
        rows.append(pooled_row(split=split, clients=clients, rounds=rounds,
                               local_epochs=local_epochs, lr=lr))
    return rows


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f}"


def format_rows(rows: Sequence[Row]) -> str:
    """The rows as a fixed-width text table."""
    header = (f"{'setting':<33} {'split':<5} {'accuracy':>8} {'s/round':>8} "
              f"{'protect ms':>10} {'sum ms':>7} {'bytes down':>11} {'bytes up':>10} "
              f"{'epsilon':>8} {'eps 1 upd':>9}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.setting:<33} {row.split:<5} {row.accuracy:>8.3f} "
            f"{row.seconds_per_round:>8.3f} {_milliseconds(row.protect_seconds):>10} "
            f"{_milliseconds(row.aggregate_seconds):>7} {_number(row.bytes_down, ',.0f'):>11} "
            f"{_number(row.bytes_up, ',.0f'):>10} {_number(row.epsilon, '.2f'):>8} "
            f"{_number(row.epsilon_one_update, '.2f'):>9}"
        )
    return "\n".join(lines)


@dataclass
class FederatedReport:
    """The rows of :func:`compare` and the ratios of DP + encrypted aggregation to FedAvg."""

    rows: list[Row]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]

    @property
    def ratios(self) -> dict[str, float]:
        """Per split: bytes up and seconds per round of DP + encryption over Flower's FedAvg."""
        out: dict[str, float] = {}
        for split in dict.fromkeys(row.split for row in self.rows):
            by = {row.setting: row for row in self.rows if row.split == split}
            plain, secure = by[SETTINGS["fedavg"]], by[SETTINGS["dp+he"]]
            if plain.bytes_up and secure.bytes_up:
                out[f"{split}: bytes up, dp+he / fedavg"] = secure.bytes_up / plain.bytes_up
            if plain.seconds_per_round:
                out[f"{split}: s per round, dp+he / fedavg"] = (
                    secure.seconds_per_round / plain.seconds_per_round
                )
        return out

    def __str__(self) -> str:
        notes = dict.fromkeys(f"  {row.setting}: {row.note}" for row in self.rows if row.note)
        ratios = [f"  {name}: {value:.2f}x" for name, value in self.ratios.items()]
        return "\n".join([format_rows(self.rows), *notes, *ratios])


def run_federated(
    *, quick: bool = False, progress: Callable[[str], None] = print, **options: Any
) -> FederatedReport:
    """The federated rows for ``pets bench`` (``quick``: 2 rounds instead of 5)."""
    progress("federated: Flower simulation, 3 clients; FedAvg, DP, DP + encrypted aggregation "
             "on iid and label splits, and pooled training")
    return FederatedReport(compare(quick=quick, **options))
