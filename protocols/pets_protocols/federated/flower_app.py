"""The Flower App for the deployment engine: ``server_app`` and ``client_app``.

``protocols/pets_protocols/federated/app/pyproject.toml`` names these two objects; ``flwr run``
ships that app to a SuperLink, which starts the ServerApp, and each SuperNode
starts the ClientApp. Everything secret or private comes from the party's own
configuration, never from the other side:

* **server** (run config): ``public-key-file`` (the federation's public keys
  only), ``num-server-rounds``, ``min-clients``, ``min-available-clients``,
  ``local-epochs``, ``lr``, ``split``, ``round-timeout`` (for the replies, and for
  the clients to connect), ``result-file``
  (JSON written at the end, or when a round fails), ``state-file`` (the last
  global state, encrypted, kept for a resume with ``initial-state-file``);
* **each client** (``flower-supernode --node-config``): ``partition-id``,
  ``num-partitions``, ``key-file`` (the key set with the secret key), and its
  DP policy ``epsilon``, ``delta``, ``planned-rounds``, ``clip-norm``,
  ``noise-clients``; ``fail-at-round`` makes it crash in that round (a dropout).
"""

from __future__ import annotations

import itertools
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

import pets
from pets_protocols.federated.apps import MODEL_SIZES, make_client_app
from pets_protocols.federated.mod import BYTES_DOWN, BYTES_UP, EPSILON, SecureUpdateMod
from pets_protocols.federated.model import init_parameters
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import load_state, plain_record, save_state
from pets_protocols.federated.strategy import SecureFedAvg, round_clock

__all__ = ["ACTION", "client_app", "server_app"]

logger = logging.getLogger(__name__)

ACTION = "pets"


# ---- the client -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _settings(
    epsilon: float, delta: float, rounds: int, clip_norm: float, noise_clients: int
) -> DPSettings:
    return DPSettings.for_budget(epsilon, delta, rounds=rounds, clip_norm=clip_norm,
                                 noise_clients=noise_clients)


def _node_privacy(context: Context) -> DPSettings:
    config = context.node_config
    try:
        return _settings(
            float(config["epsilon"]),  # type: ignore[arg-type]
            float(config.get("delta", 1e-5)),  # type: ignore[arg-type]
            int(config["planned-rounds"]),  # type: ignore[arg-type]
            float(config.get("clip-norm", 1.0)),  # type: ignore[arg-type]
            int(config["noise-clients"]),  # type: ignore[arg-type]
        )
    except KeyError as exc:
        raise pets.DPConfigurationError(
            f"this SuperNode has no {exc.args[0]!r} in its node config. Fix: start it with "
            "--node-config \"epsilon=8.0 planned-rounds=3 noise-clients=2 key-file='...'\""
        ) from None


def _node_key(context: Context) -> bytes:
    try:
        return Path(str(context.node_config["key-file"])).read_bytes()
    except KeyError:
        raise pets.MissingKeyError(
            "this SuperNode has no key-file in its node config. Fix: start it with "
            "--node-config \"key-file='/path/to/federation.key' ...\" (from the key authority)"
        ) from None
    except OSError as exc:
        raise pets.MissingKeyError(
            f"cannot read this SuperNode's key-file: {exc}. Fix: give the path of the key set "
            "the key authority handed out"
        ) from exc


def _client_app() -> ClientApp:
    mod = SecureUpdateMod(privacy=_node_privacy, key=_node_key, name=ACTION)

    def crash_on_request(message: Message, context: Context, call_next: Any) -> Message:
        """The ``fail-at-round`` node config as a crash: a dropout on purpose."""
        wanted = context.node_config.get("fail-at-round")
        config = message.content.config_records.get("config")
        current = config.get("server-round") if config else None
        if wanted is not None and message.metadata.message_type.startswith("train") and \
                int(wanted) == current:  # type: ignore[call-overload]
            raise RuntimeError(f"node asked to drop out in round {current} (fail-at-round)")
        return call_next(message, context)  # type: ignore[no-any-return]

    return make_client_app(split="iid", actions={ACTION: [crash_on_request, mod]})


client_app = _client_app()


# ---- the server -----------------------------------------------------------------------

server_app = ServerApp()


def _write(path: str, content: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(content, indent=2), encoding="utf-8")


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    config = context.run_config
    rounds = int(config["num-server-rounds"])  # type: ignore[arg-type]
    strategy = SecureFedAvg(
        public_key=Path(str(config["public-key-file"])).read_bytes(),
        min_clients=int(config["min-clients"]),  # type: ignore[arg-type]
        action=ACTION,
        min_available_nodes=int(config["min-available-clients"]),  # type: ignore[arg-type]
        connect_timeout=float(config.get("round-timeout", 120.0)),  # type: ignore[arg-type]
    )
    initial_file = str(config.get("initial-state-file", ""))
    initial: ArrayRecord = (
        load_state(initial_file) if initial_file
        else plain_record(init_parameters(MODEL_SIZES, seed=0))
    )
    stamps: list[float] = []
    report: dict[str, Any] = {"rounds": rounds, "error": None}
    try:
        result = strategy.start(
            grid=grid, initial_arrays=initial, num_rounds=rounds,
            timeout=float(config.get("round-timeout", 120.0)),  # type: ignore[arg-type]
            train_config=ConfigRecord({
                "local-epochs": int(config.get("local-epochs", 2)),  # type: ignore[arg-type]
                "lr": float(config.get("lr", 0.1)),  # type: ignore[arg-type]
                "split": str(config.get("split", "iid")),
            }),
            evaluate_fn=round_clock(stamps),
        )
        evaluated = result.evaluate_metrics_clientapp
        trained = result.train_metrics_clientapp
        last = trained[max(trained)] if trained else {}
        report.update(
            accuracy=[float(evaluated[n]["accuracy"]) for n in sorted(evaluated)],  # type: ignore[arg-type]
            seconds_per_round=[b - a for a, b in itertools.pairwise(stamps)],
            bytes_up=last.get(BYTES_UP), bytes_down=last.get(BYTES_DOWN),
            epsilon=last.get(EPSILON),
        )
    except pets.PetsError as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report["reports"] = [vars(r) for r in strategy.rounds]
        if strategy.last_state is not None and config.get("state-file"):
            save_state(strategy.last_state, str(config["state-file"]))
        _write(str(config.get("result-file", "")), report)
