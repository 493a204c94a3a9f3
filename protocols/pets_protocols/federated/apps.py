"""The Flower apps: one ClientApp (local training on the client's shard) and its actions.

The client's functions are plain Flower: train on the shard the node holds,
evaluate on its test shard. Protection is added by registering them under an
*action* wrapped by :class:`~.mod.SecureUpdateMod`, the way Flower's own DP and
SecAgg+ mods wrap an app. A real client registers only its protected action;
the comparison registers three on one app (Flower's message type
``train.<action>`` picks one), so a single simulation runs all of them::

    action      message types                 mods
    default     train / evaluate              traffic_mod                  (Flower's FedAvg)
    dp          train.dp / evaluate.dp        traffic_mod, DP only         (no key)
    pets        train.pets / evaluate.pets    traffic_mod, DP + encryption
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from pets_protocols.federated.data import Shard, client_shard
from pets_protocols.federated.mod import traffic_mod
from pets_protocols.federated.model import accuracy, train
from pets_protocols.federated.records import plain_record, record_parameters

__all__ = ["DEFAULT_ACTION", "MODEL_SIZES", "make_client_app"]

logger = logging.getLogger(__name__)

DEFAULT_ACTION = "default"
#: the digits MLP: 64 inputs, 32 hidden units, 10 classes (2,410 parameters)
MODEL_SIZES = (64, 32, 10)


def _shard(context: Context, split: str) -> Shard:
    config = context.node_config
    return client_shard(
        int(config["partition-id"]),  # type: ignore[arg-type]
        int(config["num-partitions"]),  # type: ignore[arg-type]
        split,
    )


def make_client_app(
    *,
    split: str = "iid",
    actions: Mapping[str, Sequence[Mod]],
    fail_at: Mapping[int, int] | None = None,
) -> ClientApp:
    """A ClientApp whose train/evaluate functions run under each of ``actions``.

    ``actions`` maps an action name to the mods wrapping it (``"default"``: the plain
    ``train`` / ``evaluate`` message types); :func:`~.mod.traffic_mod` is put first in
    each. ``split`` is the data split (overridden by the run config's ``split``, and that by
    the ``split`` the strategy puts in its train config).
    ``fail_at={partition: round}`` makes that client crash when asked to train in that
    round: a dropout, for tests and demonstrations.
    """
    crashes = dict(fail_at or {})

    def train_fn(message: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])  # type: ignore[arg-type]
        config = message.content.config_records.get("config")
        server_round = int(config.get("server-round", 0)) if config else 0  # type: ignore[arg-type]
        if crashes.get(partition) == server_round:
            raise RuntimeError(f"client {partition} dropped out in round {server_round}")
        epochs = int(config.get("local-epochs", 2)) if config else 2  # type: ignore[arg-type]
        lr = float(config.get("lr", 0.1)) if config else 0.1  # type: ignore[arg-type]
        how = config.get("split", context.run_config.get("split", split)) if config else split
        shard = _shard(context, str(how))
        params = record_parameters(next(iter(message.content.array_records.values())))
        new, loss = train(params, shard.x_train, shard.y_train, epochs=epochs, lr=lr,
                          seed=1000 * server_round + partition)
        metrics = MetricRecord({"num-examples": len(shard.y_train), "train-loss": loss})
        return Message(RecordDict({"arrays": plain_record(new), "metrics": metrics}),
                       reply_to=message)

    def evaluate_fn(message: Message, context: Context) -> Message:
        shard = _shard(context, split)  # the test shard is an even split whatever ``split``
        params = record_parameters(next(iter(message.content.array_records.values())))
        metrics = MetricRecord({"accuracy": accuracy(params, shard.x_test, shard.y_test),
                                "num-examples": len(shard.y_test)})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    app = ClientApp()
    for action, mods in actions.items():
        wrapped = [traffic_mod, *mods]
        app.train(action, mods=wrapped)(train_fn)
        app.evaluate(action, mods=wrapped)(evaluate_fn)
    return app
