"""Federated learning with DP and CKKS-encrypted aggregation, from ``pets_protocols.federated``.

The rounds run in this process, step for step as ``pets_protocols.federated``'s Flower
client mod and strategy do them, with its own pieces: each client trains the numpy MLP
on its shard (``model.train``), pays for the round in its ``pets.dp.Budget``, clips and
noises its update (``DPSettings.privatize``: its share of the Gaussian noise), encrypts
its proposal (``packing.encrypt_vector``); the aggregator, which holds only
``keys.public()``, sums ciphertexts (``packing.sum_tensors``); the clients decrypt the
sum and divide by the count. Flower's orchestration is left out of the time (the full
run adds Flower's own simulation numbers to the cost's details).

The aggregator's view (bytes received, ``has_secret_key``, the error its ``decrypt``
raises, and :func:`~pets_benchmarks.assess.evidence.ciphertext_check` on an update it
loaded) is the evidence of the ``impossible`` cells.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from pets_benchmarks.assess.cells import Cost
from pets_benchmarks.assess.config import AssessConfig
from pets_benchmarks.assess.evidence import Verdict, ciphertext_check
from pets_benchmarks.assess.workload import Workload, stopwatch

__all__ = ["FLRun", "run_federated", "torch_twin"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FLRun:
    """The federation's cost, the aggregator's view, its privacy settings and final model."""

    training: Cost
    aggregator_view: dict[str, Any]
    #: this run's check of an update as the aggregator held it
    aggregator_check: Verdict
    noise_multiplier_one_update: float
    epsilon: float
    epsilon_one_update: float
    parameters: dict[str, Any]


def _refusal(action: Any) -> str:
    import pets

    try:
        action()
    except pets.PetsError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error: the aggregator could decrypt (this would be a broken deployment)"


def run_federated(workload: Workload, config: AssessConfig) -> FLRun:
    """``fl_rounds`` rounds of ``fl_clients`` clients over the members; pooled as reference."""
    import math

    from pets_protocols.federated import packing
    from pets_protocols.federated.apps import MODEL_SIZES
    from pets_protocols.federated.model import accuracy, flatten, init_parameters, train, unflatten
    from pets_protocols.federated.privacy import DPSettings

    import pets

    clients, rounds = config.fl_clients, config.fl_rounds
    privacy = DPSettings.for_budget(config.fl_epsilon, config.delta, rounds=rounds,
                                    clip_norm=config.clip_norm,
                                    noise_clients=max(1, clients - 1))
    keys = packing.make_keys()                                  # the key authority
    public = keys.public().to_bytes()
    aggregator = pets.load_backend(public)                      # no secret key
    features, labels = workload.rows(workload.members)
    x, y = features.astype(np.float64), labels.astype(np.int64)
    test_features, test_y = workload.rows(workload.test)
    test_x = test_features.astype(np.float64)
    shards = np.array_split(np.arange(len(y)), clients)
    params = init_parameters(MODEL_SIZES, seed=config.seed)
    shapes = {name: value.shape for name, value in params.items()}
    size = flatten(params).size
    budgets = [privacy.new_budget() for _ in range(clients)]
    up, down, protect, aggregate, accuracies = [], [], [], [], []
    held: dict[str, Any] = {}
    with stopwatch() as elapsed:
        for number in range(1, rounds + 1):
            logger.info("FL: round %d of %d", number, rounds)
            start = flatten(params)
            uploads = []
            for client, shard in enumerate(shards):
                local, _ = train(params, x[shard], y[shard], epochs=config.fl_local_epochs,
                                 lr=config.fl_lr, seed=1000 * number + client)
                budgets[client].spend_mechanism(privacy.round_mechanism(),
                                                label=f"federated round {number}")
                with stopwatch() as protecting:
                    proposal = start + privacy.privatize(flatten(local) - start)
                    uploads.append(packing.encrypt_vector(keys, proposal).to_bytes())
                protect.append(protecting[0])
            with stopwatch() as summing:                        # the aggregator
                tensors = [aggregator.load_tensor(data) for data in uploads]
                total = packing.sum_tensors(tensors).to_bytes()
            aggregate.append(summing[0])
            held = {"tensor": tensors[0], "uploads": [len(data) for data in uploads]}
            up.append(statistics.mean(len(data) for data in uploads))
            down.append(len(total))
            summed = packing.decrypt_vector(keys, keys.load_tensor(total), size)  # clients
            params = unflatten(summed / clients, shapes)
            accuracies.append(accuracy(params, test_x, test_y))
    pooled = init_parameters(MODEL_SIZES, seed=config.seed)
    with stopwatch() as pooled_time:
        pooled, _ = train(pooled, x, y, epochs=rounds * config.fl_local_epochs,
                          lr=config.fl_lr, seed=config.seed)
    refused = _refusal(lambda: aggregator.decrypt(held["tensor"]))
    check = ciphertext_check(aggregator, held["tensor"], refusal=refused)
    view = {
        "held by the aggregator": "the public key set and one ciphertext per client per round",
        "public key set bytes": len(public),
        "ciphertext bytes per update": held["uploads"],
        "aggregator has_secret_key": aggregator.has_secret_key,
        "aggregator decrypt attempt": refused,
        "no record leaves its client": f"each client trains on its {len(shards[0])} or so "
                                       "records locally; only encrypted proposals travel",
    }
    epsilon = max(float(b.spent[0]) for b in budgets)
    details: dict[str, Any] = {
        "clients": clients, "rounds": rounds, "accuracy after each round": accuracies,
        "seconds per round": elapsed[0] / rounds,
        "protect seconds per client per round (median)": statistics.median(protect),
        "aggregate seconds per round (median)": statistics.median(aggregate),
        "bytes up per client per round": statistics.mean(up),
        "bytes down per client per round": statistics.mean(down),
        "epsilon spent per client": epsilon, "delta": config.delta,
        "epsilon of one update seen alone (a colluding key holder)":
            privacy.epsilon_of_one_update(rounds),
        "noise multiplier of the round's sum": privacy.noise_multiplier,
        "clip norm": privacy.clip_norm, "noise shares": privacy.noise_clients,
    }
    if config.flower:
        details["Flower simulation"] = _flower(config, privacy, keys)
    training = Cost(
        work=f"train the 64-32-10 ReLU MLP over {clients} clients' records "
             f"({rounds} rounds of {config.fl_local_epochs} local epochs)",
        seconds=elapsed[0], plain_seconds=pooled_time[0],
        bytes=float(sum(up) + sum(down)) * clients, plain_bytes=float(x.nbytes + y.nbytes),
        accuracy=accuracies[-1],
        plain_accuracy=accuracy(pooled, test_x, test_y),
        details=details,
    )
    return FLRun(training, view, check,
                 privacy.noise_multiplier / math.sqrt(privacy.noise_clients), epsilon,
                 privacy.epsilon_of_one_update(rounds), params)


def _flower(config: AssessConfig, privacy: Any, keys: Any) -> dict[str, Any]:
    """The same federation on Flower's simulation engine (its own digits split)."""
    try:
        from pets_protocols.federated import simulate

        logger.info("FL: the same rounds on Flower's simulation engine")
        run = simulate(modes=("dp+he",), splits=("iid",), clients=config.fl_clients,
                       rounds=config.fl_rounds, privacy=privacy, keys=keys,
                       local_epochs=config.fl_local_epochs, lr=config.fl_lr)["dp+he", "iid"]
    except Exception as exc:  # reported in the cell; the in-process numbers stand
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"accuracy (its test split)": run.final_accuracy,
            "seconds per round": run.seconds_per_round, "bytes up per client": run.bytes_up,
            "bytes down per client": run.bytes_down, "epsilon": run.epsilon}


def torch_twin(params: dict[str, Any]) -> Any:
    """The numpy MLP's parameters (``w0, b0, w1, b1``) in a torch ``nn.Sequential`` with ReLU."""
    import torch

    layers: list[Any] = []
    count = len(params) // 2
    for layer in range(count):
        weight = np.asarray(params[f"w{layer}"])
        linear = torch.nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(weight.T, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(params[f"b{layer}"], dtype=torch.float32))
        layers.append(linear)
        if layer < count - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()
