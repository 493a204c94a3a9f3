"""``federated.train``: the user's torch model, trained by clients that keep their data.

>>> # from pets_protocols import federated
>>> # result = federated.train(model, [(x0, y0), (x1, y1), (x2, y2)], rounds=10,
>>> #                          dp=federated.SampleDP(epsilon=4.0), aggregation="secagg+",
>>> #                          evaluate=(x_test, y_test))
>>> # result.model, result.history[-1].accuracy, result.epsilon

Every client is a virtual SuperNode of Flower's simulation engine; each
aggregation mode is a pair of Flower apps (:mod:`.clientapps`, :mod:`.servers`):

=========  =====================================================================
plain      Flower's ``FedAvg`` (or ``strategy=``: ``"median"``, ``"trimmed-mean"``,
           any Flower Message-API strategy); the server reads every update
secagg+    Flower's SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``): pairwise
           masks; the server reads only the sum; each update norm-bounded first
ckks       every client holds one CKKS key; the server sums ciphertexts (protects
           against an honest-but-curious server only: any client can decrypt)
=========  =====================================================================

The caller plays the part no party plays in a deployment: it hands out the data,
makes the CKKS keys (``"ckks"``), and measures the global model after each round
on ``evaluate`` (which it may read: it is the model every client receives).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Strategy

import pets
import pets.dp
from pets_protocols.federated import packing
from pets_protocols.federated.clientapps import (
    Task,
    UpdateBoundMod,
    message_client_app,
    secagg_client_app,
)
from pets_protocols.federated.engine import quiet_logs, simulate_apps
from pets_protocols.federated.local import (
    Arrays,
    LocalPlan,
    budget_file,
    check_private_model,
    get_arrays,
    predict,
    set_arrays,
)
from pets_protocols.federated.meter import RoundRecord, client_of
from pets_protocols.federated.mod import SecureUpdateMod, open_global
from pets_protocols.federated.options import ClientDP, SampleDP
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import is_state, plain_record, record_parameters
from pets_protocols.federated.servers import Run, message_server_app, secagg_server_app
from pets_protocols.federated.strategy import SecureFedAvg

__all__ = ["AGGREGATIONS", "ENGINES", "TrainResult", "iid", "label_skew", "train"]

ENGINES = ("simulation",)
ROBUST = {"median": FedMedian, "trimmed-mean": FedTrimmedAvg}


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, each round's record, and the privacy spent."""

    model: Any
    history: list[RoundRecord]
    #: sample-level DP: epsilon each client has spent in its budget file, by client;
    #: client-level DP: the epsilon of the federation's rounds (each client's); else None
    epsilon: dict[int, float] | float | None
    aggregation: str
    seconds: float = 0.0
    budget_dir: Path | None = None

    @property
    def accuracy(self) -> float | None:
        """The accuracy after the last round (None without ``evaluate``)."""
        return self.history[-1].accuracy if self.history else None


@dataclass
class _Setup:
    """Everything an aggregation mode needs to build its two apps."""

    task: Task
    clients: int
    rounds: int
    client_dp: DPSettings | None
    strategy: Strategy | str | None
    drops: Mapping[int, Sequence[int]]
    update_bound: float
    timeout: float
    hook: Callable[[int, Arrays], dict[str, Any]]
    initial: Arrays
    run: Run = field(default_factory=Run)
    to_arrays: Callable[[ArrayRecord], Arrays] = record_parameters


# ---- checking what the user passed ------------------------------------------------------


def _as_numpy(value: Any, what: str) -> npt.NDArray[Any]:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise pets.ShapeMismatchError(
            f"{what} is not an array ({type(value).__name__}); pass numpy arrays or tensors"
        ) from exc


def _check_clients(clients: Sequence[Any]) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    if not isinstance(clients, Sequence) or len(clients) < 2:
        raise pets.ParameterError(
            "federated.train needs a list of at least 2 clients, each an (x, y) pair; got "
            f"{type(clients).__name__} of {len(clients) if hasattr(clients, '__len__') else '?'}"
        )
    data = []
    for index, pair in enumerate(clients):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise pets.ParameterError(f"client {index} is not an (x, y) pair; pass (x, y)")
        x = _as_numpy(pair[0], f"client {index}'s x").astype(np.float32)
        y = _as_numpy(pair[1], f"client {index}'s y")
        if len(x) == 0:
            raise pets.ShapeMismatchError(
                f"client {index} holds no records (x has shape {x.shape}); give every client "
                "at least one record, or leave it out of the list"
            )
        if len(x) != len(y):
            raise pets.ShapeMismatchError(
                f"client {index} has {len(x)} rows of x but {len(y)} labels; pass one label "
                "per row"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise pets.ParameterError(
                f"client {index}'s labels have dtype {y.dtype}; federated.train trains a "
                "classifier (cross-entropy): pass integer class labels"
            )
        data.append((x, y.astype(np.int64)))
    shapes = {x.shape[1:] for x, _ in data}
    if len(shapes) > 1:
        listing = ", ".join(f"client {i}: {x.shape[1:]}" for i, (x, _) in enumerate(data))
        raise pets.ShapeMismatchError(
            f"the clients' records have different feature shapes ({listing}); every client "
            "must hold the same features, in the same order (a horizontal split)"
        )
    return data


def _check_model(model: Any, sample: npt.NDArray[Any], dp: Any) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise pets.ParameterError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    try:
        predict(copy.deepcopy(model), sample[:1])
    except RuntimeError as exc:
        raise pets.ShapeMismatchError(
            f"the model cannot take the clients' records of shape {sample.shape[1:]}: "
            f"{' '.join(str(exc).split())[:200]}. Fix: make its input layer match the features"
        ) from exc
    if isinstance(dp, SampleDP):
        check_private_model(model)


# ---- the aggregation modes --------------------------------------------------------------

Apps = tuple[ServerApp, ClientApp]


def _plain_check(names: Sequence[str], initial: Arrays) -> Callable[[Message], str | None]:
    shapes = {name: initial[name].shape for name in names}

    def check(reply: Message) -> str | None:
        records = reply.content.array_records
        if not records:
            return None
        record = next(iter(records.values()))
        got = {name: tuple(array.shape) for name, array in record.items()}
        if got != shapes:
            return f"sent arrays {got}, not the model's {shapes}; left out of the round"
        if not all(np.all(np.isfinite(array.numpy())) for array in record.values()):
            return "sent non-finite values; left out of the round"
        return None

    return check


def _plain(setup: _Setup) -> Apps:
    n = setup.clients
    chosen = setup.strategy
    if isinstance(chosen, str):
        chosen = ROBUST[chosen](fraction_evaluate=0.0, min_train_nodes=max(1, n // 2),
                                min_available_nodes=n)
    strategy = chosen or FedAvg(fraction_evaluate=0.0, min_train_nodes=max(1, n // 2),
                                min_available_nodes=n)
    server = message_server_app(
        strategy, initial=plain_record(setup.initial), rounds=setup.rounds,
        hook=lambda r, record: setup.hook(r, record_parameters(record)), run=setup.run,
        train_config={}, timeout=setup.timeout,
        check=_plain_check(setup.task.names, setup.initial),
    )
    return server, message_client_app(setup.task, drops=setup.drops)


def _pets_mode(setup: _Setup, keys: pets.Backend | None) -> Apps:
    """Client-level DP in the clear, or CKKS (with or without DP): pets' mod and strategy."""
    privacy = setup.client_dp
    secret = None if keys is None else keys.to_bytes(include_secret_key=True)
    folder = setup.task.plan.budget_dir
    mod = SecureUpdateMod(
        privacy=privacy, key=secret, name="pets",
        budget_file=None if folder is None or privacy is None else
        lambda context: str(budget_file(folder, client_of(context))),
    )
    minimum = privacy.noise_clients if privacy else min(2, setup.clients)
    strategy = SecureFedAvg(
        public_key=None if keys is None else keys.public().to_bytes(), min_clients=minimum,
        action="pets", fraction_evaluate=0.0, min_available_nodes=setup.clients,
        connect_timeout=setup.timeout,
    )

    def opened(record: ArrayRecord) -> Arrays:
        params, _ = open_global(record, keys)  # the key authority's view (the caller)
        return params

    setup.to_arrays = opened
    server = message_server_app(
        strategy, initial=plain_record(setup.initial), rounds=setup.rounds,
        hook=lambda r, record: {**setup.hook(r, opened(record)), **_left_out(strategy, r)},
        run=setup.run, train_config={}, timeout=setup.timeout,
    )
    return server, message_client_app(setup.task, mods=[mod], drops=setup.drops, action="pets")


def _left_out(strategy: SecureFedAvg, number: int) -> dict[str, Any]:
    reports = [r for r in strategy.rounds if r.number == number]
    return {"notes": [f"left out {line}" for line in reports[0].dropped if "unusable" in line]
            } if reports else {}


def _ckks(setup: _Setup) -> Apps:
    return _pets_mode(setup, packing.make_keys())


def _plain_or_client_dp(setup: _Setup) -> Apps:
    if setup.client_dp is not None:
        return _pets_mode(setup, None)
    return _plain(setup)


def _secagg(setup: _Setup) -> Apps:
    privacy = setup.client_dp
    bound = privacy.clip_norm if privacy else setup.update_bound
    noise_std = privacy.share_std if privacy else 0.0
    names = setup.task.names
    initial = [setup.initial[name] for name in names]
    server = secagg_server_app(
        initial=initial, rounds=setup.rounds, clients=setup.clients, bound=bound,
        noise_std=noise_std, clipping_range=bound + 8 * noise_std,
        hook=lambda r, arrays: setup.hook(r, dict(zip(names, arrays, strict=True))),
        run=setup.run, timeout=setup.timeout,
    )
    client = secagg_client_app(
        setup.task, bound=UpdateBoundMod(bound, privacy, setup.task.plan.budget_dir),
        drops=setup.drops)
    setup.to_arrays = lambda record: dict(zip(names, (a.numpy() for a in record.values()),
                                              strict=True))
    return server, client


AGGREGATIONS: dict[str, Callable[[_Setup], Apps]] = {
    "plain": _plain_or_client_dp,
    "secagg+": _secagg,
    "ckks": _ckks,
}
"""Aggregation mode -> the function building its server and client apps."""


# ---- the call ---------------------------------------------------------------------------


def _measure(
    model: Any, evaluate: tuple[Any, Any] | None
) -> Callable[[int, Arrays], dict[str, Any]]:
    if evaluate is None:
        return lambda number, arrays: {}
    x = _as_numpy(evaluate[0], "evaluate's x").astype(np.float32)
    y = _as_numpy(evaluate[1], "evaluate's y").astype(np.int64)

    def measure(number: int, arrays: Arrays) -> dict[str, Any]:
        probe = copy.deepcopy(model)
        set_arrays(probe, arrays)
        classes, logits = predict(probe, x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-np.mean(log_probs[np.arange(len(y)), y]))
        return {"accuracy": float(np.mean(classes == y)), "loss": loss}

    return measure


def _check_choice(aggregation: str, engine: str, strategy: Any, dp: Any, clients: int) -> None:
    if aggregation not in AGGREGATIONS:
        raise pets.ParameterError(
            f"unknown aggregation {aggregation!r}; choose from: {', '.join(AGGREGATIONS)}"
        )
    if engine not in ENGINES:
        raise pets.ParameterError(
            f"engine {engine!r} is not available to federated.train (its model and data live "
            f"in this process); choose from: {', '.join(ENGINES)}. For real SuperNodes see "
            "pets_protocols.federated.deployment"
        )
    if dp is not None and not isinstance(dp, (SampleDP, ClientDP)):
        raise pets.dp.DPConfigurationError(
            f"dp must be federated.SampleDP(...), federated.ClientDP(...) or None, got {dp!r}"
        )
    if strategy is not None:
        if aggregation != "plain" or isinstance(dp, ClientDP):
            raise pets.ParameterError(
                "strategy= replaces Flower's FedAvg under aggregation='plain' without ClientDP "
                "only; the secure modes and client-level DP bring their own aggregation"
            )
        if isinstance(strategy, str) and strategy not in ROBUST:
            raise pets.ParameterError(
                f"unknown strategy {strategy!r}; choose from: {', '.join(ROBUST)}, or pass a "
                "Flower strategy (flwr.serverapp.strategy)"
            )
    if aggregation == "secagg+" and clients < 3:
        raise pets.ParameterError(
            f"SecAgg+ needs at least 3 clients (its reconstruction threshold is at least 2 "
            f"of a client's other neighbours), got {clients}; add clients or use "
            "aggregation='plain' or 'ckks'"
        )


def _client_dp(dp: Any, clients: int, rounds: int) -> DPSettings | None:
    if not isinstance(dp, ClientDP):
        return None
    return DPSettings.for_budget(dp.epsilon, dp.delta, rounds=rounds, clip_norm=dp.clip_norm,
                                 noise_clients=dp.noise_clients or max(1, clients - 1))


def train(
    model: Any,
    clients: Sequence[tuple[Any, Any]],
    *,
    rounds: int = 10,
    local_epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 32,
    dp: SampleDP | ClientDP | None = None,
    aggregation: str = "plain",
    engine: str = "simulation",
    evaluate: tuple[Any, Any] | None = None,
    strategy: Strategy | str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    drops: Mapping[int, Sequence[int]] | None = None,
    update_bound: float = 10.0,
    timeout: float = 600.0,
    verbose: bool = False,
) -> TrainResult:
    """Train ``model`` (a torch classifier) federated over ``clients`` (one ``(x, y)`` each).

    ``dp``: :class:`SampleDP` (DP-SGD in each client), :class:`ClientDP` (clipped,
    noised updates) or None. ``aggregation``: ``"plain"``, ``"secagg+"``, ``"ckks"``.
    ``evaluate=(x, y)``: accuracy and loss of the global model after each round.
    ``strategy``: under plain aggregation, ``"median"``, ``"trimmed-mean"`` or a Flower
    strategy. ``drops={round: [client, ...]}``: those clients drop out of those rounds.
    ``update_bound``: the L2 bound on one client's update under ``"secagg+"`` (ClientDP's
    ``clip_norm`` instead, when given). ``progress``: called with one line per round.
    ``timeout``: how long the server waits for the clients' replies at each step (a client
    later than that counts as dropped out). ``verbose``: let Flower's and Ray's logs through.
    """
    with quiet_logs(verbose):
        return _train(model, clients, rounds=rounds, local_epochs=local_epochs, lr=lr,
                      batch_size=batch_size, dp=dp, aggregation=aggregation, engine=engine,
                      evaluate=evaluate, strategy=strategy, seed=seed, progress=progress,
                      drops=drops, update_bound=update_bound, timeout=timeout,
                      verbose=verbose)


def _train(model: Any, clients: Sequence[tuple[Any, Any]], *, rounds: int, local_epochs: int,
           lr: float, batch_size: int, dp: SampleDP | ClientDP | None, aggregation: str,
           engine: str, evaluate: tuple[Any, Any] | None, strategy: Strategy | str | None,
           seed: int, progress: Callable[[str], None] | None,
           drops: Mapping[int, Sequence[int]] | None, update_bound: float, timeout: float,
           verbose: bool) -> TrainResult:
    started = time.perf_counter()
    data = _check_clients(clients)
    _check_choice(aggregation, engine, strategy, dp, len(data))
    if not (isinstance(rounds, int) and rounds >= 1):
        raise pets.ParameterError(f"rounds must be an int >= 1, got {rounds!r}")
    _check_model(model, data[0][0], dp)
    folder: Path | None = None
    if dp is not None:
        folder = Path(dp.budget_dir) if dp.budget_dir is not None else Path(
            tempfile.mkdtemp(prefix="pets-budgets-"))
        folder.mkdir(parents=True, exist_ok=True)
    template = copy.deepcopy(model).cpu()
    initial = get_arrays(template)
    plan = LocalPlan(rounds=rounds, local_epochs=local_epochs, lr=lr, batch_size=batch_size,
                     seed=seed, sample_dp=dp if isinstance(dp, SampleDP) else None,
                     budget_dir=str(folder) if folder else None)
    measure = _measure(template, evaluate)

    def hook(number: int, arrays: Arrays) -> dict[str, Any]:
        measures = measure(number, arrays)
        if progress is not None and number > 0:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in measures.items())
            progress(f"round {number}/{rounds}{': ' + shown if shown else ''}")
        return measures

    setup = _Setup(
        task=Task(template, data, plan, tuple(initial)), clients=len(data), rounds=rounds,
        client_dp=_client_dp(dp, len(data), rounds), strategy=strategy, drops=drops or {},
        update_bound=update_bound, timeout=timeout, hook=hook, initial=initial,
    )
    server, client = AGGREGATIONS[aggregation](setup)
    simulate_apps(server, client, supernodes=len(data), verbose=verbose)
    return _result(setup, dp, aggregation, template, folder, started)


def _result(setup: _Setup, dp: Any, aggregation: str, template: Any, folder: Path | None,
            started: float) -> TrainResult:
    run = setup.run
    if run.errors:
        error = run.errors[0]
        if isinstance(error, pets.PetsError):
            raise error
        raise pets.PartyError(f"the federated server failed: {error!r}") from error
    history = run.meter.records if run.meter is not None else []
    if len(history) < setup.rounds:
        raise pets.PartyError(
            f"the federation ran {len(history)} of {setup.rounds} rounds; run again with "
            "verbose=True to see Flower's log"
        )
    model = copy.deepcopy(template)
    if run.final is not None:
        set_arrays(model, setup.to_arrays(run.final) if is_state(run.final) or
                   aggregation == "secagg+" else record_parameters(run.final))
    epsilon: dict[int, float] | float | None = None
    spent = {} if folder is None else {
        i: pets.dp.Budget.load(budget_file(folder, i)).spent[0]
        for i in range(setup.clients) if budget_file(folder, i).exists()}
    if isinstance(dp, SampleDP):
        epsilon = spent
    elif setup.client_dp is not None:  # each client's participation: the most any spent
        epsilon = max(spent.values(), default=0.0)
    return TrainResult(model=model, history=history, epsilon=epsilon, aggregation=aggregation,
                       seconds=time.perf_counter() - started, budget_dir=folder)


def label_skew(x: Any, y: Any, clients: int, *, classes_per_client: int = 2,
               seed: int = 0) -> list[tuple[Any, Any]]:
    """Split ``(x, y)`` so each client holds mostly ``classes_per_client`` classes.

    Records are sorted by label and cut into ``clients * classes_per_client`` shards,
    each client getting ``classes_per_client`` random ones (the FedAvg paper's split).

    >>> parts = label_skew(np.zeros((40, 2)), np.repeat(np.arange(4), 10), 2)
    >>> [len(set(y.tolist())) <= 2 for _, y in parts]
    [True, True]
    """
    x, y = np.asarray(x), np.asarray(y)
    order = np.argsort(y, kind="stable")
    shards = np.array_split(order, clients * classes_per_client)
    picks = np.random.default_rng(seed).permutation(len(shards))
    return [(x[np.concatenate([shards[s] for s in picks[c::clients]])],
             y[np.concatenate([shards[s] for s in picks[c::clients]])]) for c in range(clients)]


def iid(x: Any, y: Any, clients: int, *, seed: int = 0) -> list[tuple[Any, Any]]:
    """Split ``(x, y)`` into ``clients`` random, near-equal parts.

    >>> [len(part[1]) for part in iid(np.zeros((10, 2)), np.arange(10), 3)]
    [4, 3, 3]
    """
    x, y = np.asarray(x), np.asarray(y)
    order = np.random.default_rng(seed).permutation(len(y))
    return [(x[part], y[part]) for part in np.array_split(order, clients)]

