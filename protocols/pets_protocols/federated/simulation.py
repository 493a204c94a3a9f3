"""Federated training on Flower's simulation engine (Ray): one call, every party, one process tree.

``simulate(modes=...)`` starts Flower's simulation engine once with ``clients``
virtual SuperNodes (Ray actors run their ClientApps in worker processes) and a
ServerApp that runs each mode in turn on the same federation:

=========  ==========================================================================
mode       what the clients send and what the server does
=========  ==========================================================================
fedavg     Flower's own ``FedAvg``: plain models, averaged weighted by examples
dp         clipped updates with a DP noise share, in the clear; unweighted mean
dp+he      the same, encrypted under the clients' CKKS key; the server sums ciphertexts
=========  ==========================================================================

Each mode runs once per data split (``"iid"``, ``"label"``); every (mode, split)
pair has its own action and so its own privacy budget on each client. The key
authority is the caller: it makes the key set (or takes ``keys``),
gives the secret key set to the ClientApp and only the public part to the
strategy. Timings, bytes and epsilon come from the same run.

>>> # runs = simulate(modes=("fedavg", "dp+he"), splits=("iid", "label"), clients=3, rounds=3)
>>> # run = runs["dp+he", "iid"]; run.accuracy[-1], run.bytes_up, run.epsilon
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.clientapp.typing import Mod
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Result

import pets
from pets_protocols.federated import packing
from pets_protocols.federated.apps import DEFAULT_ACTION, MODEL_SIZES, make_client_app
from pets_protocols.federated.mod import BYTES_DOWN, BYTES_UP, SecureUpdateMod
from pets_protocols.federated.model import init_parameters
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import plain_record
from pets_protocols.federated.strategy import RoundReport, SecureFedAvg, round_clock

__all__ = ["MODES", "FederatedRun", "default_privacy", "simulate"]

logger = logging.getLogger(__name__)

MODES = ("fedavg", "dp", "dp+he")
_ACTIONS = {"fedavg": DEFAULT_ACTION, "dp": "dp", "dp+he": "pets"}


def _action(mode: str, split: str) -> str:
    return DEFAULT_ACTION if mode == "fedavg" else f"{_ACTIONS[mode]}_{split}"


@dataclass
class FederatedRun:
    """One mode's run: accuracy after each round, its costs, and where it ended."""

    mode: str
    split: str
    clients: int
    rounds: int
    accuracy: list[float] = field(default_factory=list)
    seconds_per_round: float = 0.0
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    epsilon: float | None = None
    epsilon_one_update: float | None = None
    #: median over rounds: a client's time to clip, noise and encrypt; the server's to sum
    protect_seconds: float | None = None
    aggregate_seconds: float | None = None
    reports: list[RoundReport] = field(default_factory=list)
    final_state: ArrayRecord | None = None

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1] if self.accuracy else math.nan


def default_privacy(clients: int, rounds: int, epsilon: float = 8.0) -> DPSettings:
    """``(epsilon, 1e-5)`` over ``rounds`` rounds, clip norm 1, noise in ``clients - 1`` shares
    (so the round survives one dropout, and a client that removes its own share still
    leaves the full noise)."""
    return DPSettings.for_budget(epsilon, 1e-5, rounds=rounds, clip_norm=1.0,
                                 noise_clients=max(1, clients - 1))


def _last(metrics: Mapping[int, Any], key: str) -> float:
    for number in sorted(metrics, reverse=True):
        if key in metrics[number]:
            return float(metrics[number][key])
    return 0.0


def _collect(run: FederatedRun, result: Result, stamps: Sequence[float]) -> None:
    evaluated = result.evaluate_metrics_clientapp
    run.accuracy = [float(evaluated[n]["accuracy"]) for n in sorted(evaluated)]  # type: ignore[arg-type]
    durations = sorted(b - a for a, b in itertools.pairwise(stamps))
    run.seconds_per_round = statistics.median(durations) if durations else math.nan
    trained = result.train_metrics_clientapp
    run.bytes_up = _last(trained, BYTES_UP)
    run.bytes_down = _last(trained, BYTES_DOWN)
    run.final_state = result.arrays


def _server_app(
    *,
    experiments: Sequence[tuple[str, str]],
    clients: int,
    rounds: int,
    privacy: DPSettings,
    public_key: bytes,
    train_config: dict[str, Any],
    timeout: float,
    runs: dict[tuple[str, str], FederatedRun],
    errors: list[BaseException],
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        initial = plain_record(init_parameters(MODEL_SIZES, seed=0))
        try:
            for mode, split in experiments:
                run = runs[mode, split] = FederatedRun(mode, split, clients, rounds)
                strategy: FedAvg
                if mode == "fedavg":
                    strategy = FedAvg(min_train_nodes=clients, min_evaluate_nodes=clients,
                                      min_available_nodes=clients)
                else:
                    strategy = SecureFedAvg(
                        public_key=public_key if mode == "dp+he" else None,
                        min_clients=privacy.noise_clients, action=_action(mode, split),
                        min_available_nodes=clients,
                    )
                stamps: list[float] = []  # after each round's train and evaluate phases
                config = ConfigRecord({**train_config, "split": split})
                try:
                    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                                            timeout=timeout, train_config=config,
                                            evaluate_fn=round_clock(stamps))
                finally:
                    if isinstance(strategy, SecureFedAvg):
                        run.reports = strategy.rounds
                        run.final_state = strategy.last_state
                _collect(run, result, stamps)
                if isinstance(strategy, SecureFedAvg):
                    run.epsilon = _last(result.train_metrics_clientapp, "pets.epsilon")
                    run.epsilon_one_update = privacy.epsilon_of_one_update(rounds)
                    run.protect_seconds = statistics.median(r.protect_seconds for r in run.reports)
                    run.aggregate_seconds = statistics.median(
                        r.aggregate_seconds for r in run.reports
                    )
        except BaseException as exc:  # re-raised in the caller's thread after Flower stops
            errors.append(exc)

    return app


def simulate(
    *,
    modes: Sequence[str] = ("dp+he",),
    splits: Sequence[str] = ("iid",),
    clients: int = 3,
    rounds: int = 3,
    privacy: DPSettings | None = None,
    keys: pets.Backend | None = None,
    local_epochs: int = 2,
    lr: float = 0.1,
    fail_at: Mapping[int, int] | None = None,
    timeout: float = 120.0,
) -> dict[tuple[str, str], FederatedRun]:
    """Train the digits MLP federated over ``clients`` simulated clients, once per mode and
    split; the result maps ``(mode, split)`` to its :class:`FederatedRun`.

    Raises the ServerApp's error (e.g. ``PartyError`` when too few clients remain in a
    round) after the simulation has shut down; the runs so far, the failed one with the
    last state it completed, are attached to it as ``error.runs``.
    """
    from flwr.simulation import run_simulation

    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise pets.ParameterError(
            f"unknown federated mode(s) {unknown}; choose from: {', '.join(MODES)}"
        )
    privacy = privacy or default_privacy(clients, rounds)
    keys = keys or packing.make_keys()
    secret = keys.to_bytes(include_secret_key=True)
    experiments = [(mode, split) for split in splits for mode in modes]
    actions: dict[str, list[Mod]] = {DEFAULT_ACTION: []} if "fedavg" in modes else {}
    for mode, split in experiments:
        if mode != "fedavg":
            key = secret if mode == "dp+he" else None
            name = _action(mode, split)
            actions[name] = [SecureUpdateMod(privacy=privacy, key=key, name=name)]
    runs: dict[tuple[str, str], FederatedRun] = {}
    errors: list[BaseException] = []
    server = _server_app(
        experiments=experiments, clients=clients, rounds=rounds, privacy=privacy,
        public_key=keys.public().to_bytes(),
        train_config={"local-epochs": local_epochs, "lr": lr}, timeout=timeout,
        runs=runs, errors=errors,
    )
    client = make_client_app(split=splits[0], actions=actions, fail_at=fail_at)
    cpus = max(1, min(clients, os.cpu_count() or 1))
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False},
        },
    )
    if errors:
        error = errors[0]
        if not isinstance(error, pets.PetsError):
            raise pets.PartyError(f"the federated server app failed: {error!r}") from error
        error.runs = runs  # type: ignore[attr-defined]
        raise error
    missing = [pair for pair in experiments if pair not in runs]
    if missing:
        raise pets.PartyError(
            f"the simulation ended before {missing} ran; see Flower's log above"
        )
    return runs
