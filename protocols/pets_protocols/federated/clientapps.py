"""The ClientApps :func:`~.api.train` runs: the user's torch model trained on each client's data.

Two shapes of the same client, because Flower speaks two protocols:

* :func:`message_client_app` answers Flower's Message API (``train`` with an
  ``ArrayRecord``): plain FedAvg and its variants, and the pets modes built on
  :class:`~.mod.SecureUpdateMod` (client-level DP, CKKS);
* :func:`secagg_client_app` answers Flower's SecAgg+ workflow, whose records are
  the legacy ``FitIns`` / ``FitRes``: Flower's own ``secaggplus_mod`` masks what
  :class:`UpdateBoundMod` hands it, the client's update bounded in L2 norm (and
  noised under client-level DP) before any mask is added.

Each client is told apart by its partition id; ``drops={round: [client, ...]}``
makes those clients drop out of those rounds (they answer with an error, which
the history shows as one line, and nothing else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.constant import ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

import pets
from pets_protocols.federated.local import Arrays, LocalPlan, budget_file, fit_locally, predict
from pets_protocols.federated.meter import client_of, who_mod
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import plain_record

__all__ = [
    "DROPOUT",
    "Task",
    "UpdateBoundMod",
    "drop_mod",
    "message_client_app",
    "secagg_client_app",
]

DROPOUT = "simulated dropout"
Drops = Mapping[int, Sequence[int]]


@dataclass(frozen=True)
class Task:
    """The model (its architecture and initial weights), every client's data, and the plan."""

    model: Any
    clients: Sequence[tuple[npt.NDArray[Any], npt.NDArray[Any]]]
    plan: LocalPlan
    names: tuple[str, ...]

    def fit(self, client: int, arrays: Arrays, server_round: int,
            proximal_mu: float = 0.0) -> tuple[Arrays, dict[str, float]]:
        x, y = self.clients[client]
        return fit_locally(self.model, arrays, x, y, self.plan, client=client,
                           server_round=server_round, proximal_mu=proximal_mu)

    def evaluate(self, client: int, arrays: Arrays) -> dict[str, float]:
        """Accuracy of ``arrays`` on the client's own records (for strategies that ask)."""
        import copy

        from pets_protocols.federated.local import set_arrays

        x, y = self.clients[client]
        model = copy.deepcopy(self.model)
        set_arrays(model, arrays)
        classes, _ = predict(model, x)
        return {"accuracy": float(np.mean(classes == y)), "num-examples": float(len(y))}


def _round_of(message: Message) -> int:
    config = message.content.config_records.get("config")
    if config is not None and "server-round" in config:
        return int(config["server-round"])  # type: ignore[arg-type]
    return int(message.metadata.group_id or 0)


def _is_masking_stage(message: Message) -> bool:
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    return configs is not None and configs.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS


def drop_mod(drops: Drops, *, secagg: bool = False) -> Mod:
    """A mod making client ``c`` drop out of round ``r`` for every ``c in drops[r]``: it answers
    the round's training message (under SecAgg+: the masked-vector stage, after the keys were
    shared, the case the protocol must recover from) with an error and does nothing else."""
    table = {int(r): {int(c) for c in clients} for r, clients in drops.items()}

    def mod(message: Message, context: Context,
            call_next: Callable[[Message, Context], Message]) -> Message:
        is_train = message.metadata.message_type.startswith("train")
        if is_train and (not secagg or _is_masking_stage(message)):
            client = client_of(context)
            if client in table.get(_round_of(message), ()):
                return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                     reason=f"client {client}: {DROPOUT}"), reply_to=message)
        return call_next(message, context)

    return mod


def _arrays_in(record: ArrayRecord, names: Sequence[str]) -> Arrays:
    return {name: record[name].numpy() for name in names}


def _refusal(message: Message, client: int, exc: pets.PetsError) -> Message:
    reason = f"client {client}: {type(exc).__name__}: {exc}"
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=message)


def message_client_app(task: Task, *, mods: Sequence[Mod] = (), drops: Drops | None = None,
                       action: str | None = None) -> ClientApp:
    """The Message-API client: trains on its shard, replies with its model and metrics.

    ``mods`` wrap the functions (e.g. :class:`~.mod.SecureUpdateMod`); ``action`` registers
    them under ``train.<action>`` (what :class:`~.strategy.SecureFedAvg` sends).
    """

    def train_fn(message: Message, context: Context) -> Message:
        client = client_of(context)
        record = next(iter(message.content.array_records.values()))
        config = message.content.config_records.get("config")
        mu = float(config.get("proximal-mu", 0.0)) if config else 0.0  # type: ignore[arg-type]
        try:
            new, metrics = task.fit(client, _arrays_in(record, task.names), _round_of(message),
                                    mu)
        except pets.PetsError as exc:
            return _refusal(message, client, exc)
        return Message(RecordDict({"arrays": plain_record(new),
                                   "metrics": MetricRecord(dict(metrics))}),
                       reply_to=message)

    def evaluate_fn(message: Message, context: Context) -> Message:
        record = next(iter(message.content.array_records.values()))
        metrics = task.evaluate(client_of(context), _arrays_in(record, task.names))
        return Message(RecordDict({"metrics": MetricRecord(dict(metrics))}), reply_to=message)

    app = ClientApp()
    wrapped = [who_mod, drop_mod(drops or {}), *mods]
    app.train(action, mods=wrapped)(train_fn) if action else app.train(mods=wrapped)(train_fn)
    if action:
        app.evaluate(action, mods=wrapped)(evaluate_fn)
    else:
        app.evaluate(mods=wrapped)(evaluate_fn)
    return app


class UpdateBoundMod:
    """Bounds (and, under client-level DP, noises) a legacy ``FitRes`` update before masking.

    The training function replies with the client's new model; this mod replaces it by the
    update ``new - global``, clipped to L2 norm ``bound`` (``privacy.privatize`` under
    client-level DP: clip to ``clip_norm`` and add this client's noise share). Put it after
    ``secaggplus_mod`` in the mods list, so that what SecAgg+ masks is already bounded.
    """

    def __init__(self, bound: float, privacy: DPSettings | None = None,
                 budget_dir: str | None = None) -> None:
        self.bound = bound
        self.privacy = privacy
        self.budget_dir = budget_dir

    def __call__(self, message: Message, context: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
        reply = call_next(message, context)
        if reply.has_error() or not message.content.array_records:
            return reply
        fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
        start = parameters_to_ndarrays(fitins.parameters)
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        new = parameters_to_ndarrays(fitres.parameters)
        update = np.concatenate([(n - s).ravel() for n, s in zip(new, start, strict=True)])
        update = update.astype(np.float64)
        if self.privacy is not None:
            if self.budget_dir is not None:  # pay first; refused: nothing is sent
                client = client_of(context)
                try:
                    self.privacy.pay_in_file(budget_file(self.budget_dir, client),
                                             label=f"federated round {_round_of(message)}")
                except pets.PetsError as exc:
                    return _refusal(message, client, exc)
            update = self.privacy.privatize(update)
        else:
            norm = float(np.linalg.norm(update))
            update *= min(1.0, self.bound / norm) if norm > 0 else 1.0
        pieces, offset = [], 0
        for array in start:
            pieces.append(update[offset: offset + array.size].reshape(array.shape))
            offset += array.size
        fitres.parameters = ndarrays_to_parameters(pieces)
        content = compat.fitres_to_recorddict(fitres, keep_input=True)
        for name, record in reply.content.items():
            if name not in content:
                content[name] = record
        return Message(content, reply_to=message)


def secagg_client_app(
    task: Task, *, bound: UpdateBoundMod, drops: Drops | None = None
) -> ClientApp:
    """The SecAgg+ client: Flower's ``secaggplus_mod`` around a bounded update.

    Each client's weight is 1 (an unweighted mean): its record count is not disclosed,
    and under client-level DP every update must carry the same sensitivity.
    """
    from flwr.client.mod import secaggplus_mod

    def train_fn(message: Message, context: Context) -> Message:
        client = client_of(context)
        fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
        start = parameters_to_ndarrays(fitins.parameters)
        try:
            new, metrics = task.fit(client, dict(zip(task.names, start, strict=True)),
                                    _round_of(message))
        except pets.PetsError as exc:
            return _refusal(message, client, exc)
        fitres = FitRes(status=Status(code=Code.OK, message=""),
                        parameters=ndarrays_to_parameters([new[n] for n in task.names]),
                        num_examples=1, metrics=metrics)  # type: ignore[arg-type]
        return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=message)

    app = ClientApp(mods=[who_mod, drop_mod(drops or {}, secagg=True), secaggplus_mod, bound])
    app.train()(train_fn)
    return app
