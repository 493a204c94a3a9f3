"""The pets strategy: Flower's FedAvg whose aggregation is a sum of ciphertexts.

The server holds only the public half of the federation's keys. Each round it
sends the global state (the last round's encrypted sum and its count) to the
sampled clients, sums the encrypted proposals that come back without reading
them, and keeps that sum as the next global state. The clients, which hold the
secret key, decrypt it and divide by the count (:mod:`.mod`). The average is
unweighted: every client's update has the same clipped sensitivity, and the
server learns nothing from which to weight it.

A client that fails, refuses (e.g. its budget is spent) or sends bytes that do
not load is left out of the round; the round completes with the others if at
least ``min_clients`` remain (the number the DP noise was calibrated for), and
otherwise raises ``PartyError`` naming every missing client and why. The last
completed state stays in :attr:`SecureFedAvg.last_state`, so nothing is lost:
``start(initial_arrays=strategy.last_state, ...)`` resumes from it.

Only ``configure_train`` / ``aggregate_train`` change FedAvg's algorithm;
``configure_evaluate`` only routes the messages to the clients' protected
evaluate function (message type ``evaluate.<action>``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

import pets
from pets_protocols.federated import packing
from pets_protocols.federated.mod import BYTES_DOWN, BYTES_UP, EPSILON, PROTECT_SECONDS
from pets_protocols.federated.records import (
    UPDATE,
    GlobalState,
    Template,
    from_bytes,
    is_state,
    record_parameters,
    template_of,
)

__all__ = ["RoundReport", "SecureFedAvg", "round_clock", "short_reason"]

logger = logging.getLogger(__name__)


def short_reason(reason: str | None, limit: int = 300) -> str:
    """One readable line from an error reason (Flower's can be a whole remote traceback)."""
    lines = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    text = lines[-1] if lines else "no reason given"
    if "Message:" in text:  # Ray's wrapper: "... occurred. Message: <reason>'>"
        text = text.split("Message:", 1)[1].strip().rstrip("'>\"").strip()
    wrapped = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>:<'(.*)'>", text)
    if wrapped:  # the deployment engine's: "<class 'RuntimeError'>:<'<reason>'>"
        text = f"{wrapped.group(1)}: {wrapped.group(2)}"
    return text[:limit]


def round_clock(stamps: list[float]) -> Callable[[int, ArrayRecord], None]:
    """A server-side ``evaluate_fn`` that only notes the time in ``stamps``: Flower's
    ``Strategy.start`` calls it before the first round and after each round, so the
    differences are the rounds' durations (train and evaluate phases)."""

    def stamp(server_round: int, arrays: ArrayRecord) -> None:
        stamps.append(time.perf_counter())

    return stamp


@dataclass
class RoundReport:
    """What one training round did: who took part, who dropped out and why, what it cost."""

    number: int
    clients: int
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    epsilon: float | None = None
    #: mean client time to clip, noise and encrypt its update; server time to sum
    protect_seconds: float = 0.0
    aggregate_seconds: float = 0.0


class SecureFedAvg(FedAvg):
    """FedAvg over encrypted (``public_key``) or DP-only (``public_key=None``) proposals.

    ``min_clients``: the fewest usable replies a round may aggregate; set it to the
    clients' ``DPSettings.noise_clients``. ``action``: the clients' function to call
    (``train.<action>`` / ``evaluate.<action>``), the one wrapped by ``SecureUpdateMod``.
    A round waits up to ``connect_timeout`` seconds for ``min_available_nodes`` clients to
    be connected (Flower's FedAvg would wait for ever), then goes on with those connected
    if they are at least ``min_clients``, else raises ``PartyError``.
    """

    def __init__(
        self,
        *,
        public_key: bytes | None,
        min_clients: int,
        action: str = "pets",
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_available_nodes: int | None = None,
        connect_timeout: float = 120.0,
    ) -> None:
        if not (isinstance(min_clients, int) and min_clients >= 1):
            raise pets.DPConfigurationError(
                f"min_clients must be an int >= 1, got {min_clients!r}. Fix: pass the clients' "
                "DPSettings.noise_clients."
            )
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_clients,
            min_evaluate_nodes=min_clients if fraction_evaluate > 0 else 0,
            min_available_nodes=max(min_available_nodes or min_clients, min_clients),
        )
        self.public: pets.Backend | None = None
        if public_key is not None:
            self.public = pets.load_backend(public_key)
            if self.public.has_secret_key:
                raise pets.ParameterError(
                    "the aggregator was given the federation's secret key; it must hold only "
                    "the public part: pass keys.public().to_bytes()"
                )
        self.min_clients = min_clients
        self.wanted_nodes = self.min_available_nodes
        self.connect_timeout = connect_timeout
        self.action = action
        self.template: Template | None = None
        self.last_state: ArrayRecord | None = None
        self.rounds: list[RoundReport] = []
        self._sent_to: list[int] = []
        self._started = 0.0

    @property
    def encrypted(self) -> bool:
        return self.public is not None

    # ---- sending ----------------------------------------------------------------------

    def _route(self, messages: Iterable[Message], category: str) -> list[Message]:
        return [
            Message(
                m.content,
                dst_node_id=m.metadata.dst_node_id,
                message_type=f"{category}.{self.action}",
            )
            for m in messages
        ]

    def _wait_for_clients(self, grid: Grid, server_round: int) -> None:
        """Wait (bounded) for the wanted clients; let FedAvg sample among those connected."""
        deadline = time.monotonic() + self.connect_timeout
        while (connected := len(list(grid.get_node_ids()))) < self.wanted_nodes:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if connected < self.min_clients:
            raise pets.PartyError(
                f"round {server_round}: only {connected} clients connected within "
                f"{self.connect_timeout:g} s, fewer than min_clients={self.min_clients} (the "
                "clients' DP noise needs at least that many shares); start more SuperNodes "
                "(flower-supernode) or allow a longer connect_timeout"
            )
        if connected < self.wanted_nodes:
            logger.warning("round %d: %d of %d clients connected within %g s; going on "
                           "with them", server_round, connected, self.wanted_nodes,
                           self.connect_timeout)
        self.min_available_nodes = max(min(connected, self.wanted_nodes), self.min_clients)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's sampling; the state (or the public initial model) to each sampled client."""
        self._wait_for_clients(grid, server_round)
        if is_state(arrays):
            self.template = GlobalState.from_record(arrays).template
        else:
            self.template = template_of(record_parameters(arrays))
        if self.last_state is None:
            self.last_state = arrays
        messages = self._route(super().configure_train(server_round, arrays, config, grid), "train")
        self._sent_to = [m.metadata.dst_node_id for m in messages]
        self._started = time.perf_counter()
        return messages

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's, routed to the clients' protected evaluate function."""
        self._wait_for_clients(grid, server_round)
        return self._route(super().configure_evaluate(server_round, arrays, config, grid),
                           "evaluate")

    # ---- aggregating ------------------------------------------------------------------

    def _proposal(self, reply: Message) -> pets.PrivateTensor | np.ndarray:
        """A reply's proposal, checked: ciphertexts that load under the federation's key with
        the model's layout, or a vector of the model's size."""
        assert self.template is not None
        size = GlobalState(b"", 1, self.template).size
        records = reply.content.array_records
        if len(records) != 1 or UPDATE not in next(iter(records.values())):
            raise pets.SerializationError(
                "the reply carries no pets update; the client must wrap its train function "
                "with SecureUpdateMod"
            )
        array = next(iter(records.values()))[UPDATE]
        if self.public is None:
            vector = np.asarray(array.numpy(), dtype=np.float64)
            if vector.shape != (size,) or not np.all(np.isfinite(vector)):
                raise pets.SerializationError(
                    f"the update has shape {vector.shape} (or non-finite values); the model "
                    f"has {size} parameters"
                )
            return vector
        tensor = self.public.load_tensor(from_bytes(array))
        expected = packing.layout_for(self.public, size)
        if tensor.shape != (expected.slots, expected.ciphertexts):
            raise pets.SerializationError(
                f"the encrypted update has shape {tensor.shape}; a {size}-parameter model "
                f"needs ({expected.slots}, {expected.ciphertexts})"
            )
        return tensor

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Sum the usable proposals (ciphertexts stay ciphertexts); keep the sum and count."""
        replies = list(replies)
        usable: list[tuple[Message, pets.PrivateTensor | np.ndarray]] = []
        dropped: list[str] = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                dropped.append(f"node {node}: {short_reason(reply.error.reason)}")
                continue
            try:
                usable.append((reply, self._proposal(reply)))
            except pets.PetsError as exc:
                dropped.append(f"node {node}: sent an unusable update ({type(exc).__name__}: "
                               f"{exc})")
        answered = {reply.metadata.src_node_id for reply in replies}
        dropped += [f"node {node}: no reply before the timeout" for node in self._sent_to
                    if node not in answered]
        for line in dropped:
            logger.warning("round %d: left out %s", server_round, line)
        if len(usable) < self.min_clients:
            raise pets.PartyError(
                f"round {server_round}: only {len(usable)} of {len(self._sent_to)} clients sent "
                f"a usable update, fewer than min_clients={self.min_clients} (the clients' DP "
                f"noise needs at least that many shares); nothing was aggregated. Left out: "
                f"{'; '.join(dropped) or 'none'}. The last global state is kept in "
                "strategy.last_state: resume with strategy.start(initial_arrays="
                "strategy.last_state, ...) once enough clients are back."
            )
        started = time.perf_counter()
        proposals = [proposal for _, proposal in usable]
        total: bytes | np.ndarray
        if self.public is None:
            total = np.sum(np.stack([np.asarray(p) for p in proposals]), axis=0)
        else:
            total = packing.sum_tensors([p for p in proposals
                                         if isinstance(p, pets.PrivateTensor)]).to_bytes()
        assert self.template is not None
        state = GlobalState(total, len(usable), self.template).to_record()
        self.last_state = state
        aggregate = time.perf_counter() - started
        metrics = self._metrics(server_round, [reply for reply, _ in usable], dropped, aggregate)
        return state, metrics

    def _metrics(
        self, server_round: int, usable: list[Message], dropped: list[str], aggregate: float
    ) -> MetricRecord:
        values: dict[str, list[float]] = {}
        for reply in usable:
            for record in reply.content.metric_records.values():
                for key, value in record.items():
                    if isinstance(value, (int, float)):
                        values.setdefault(key, []).append(float(value))
        report = RoundReport(
            number=server_round,
            clients=len(usable),
            dropped=dropped,
            seconds=time.perf_counter() - self._started,
            bytes_up=float(np.mean(values.get(BYTES_UP, [0.0]))),
            bytes_down=float(np.mean(values.get(BYTES_DOWN, [0.0]))),
            epsilon=max(values[EPSILON]) if EPSILON in values else None,
            protect_seconds=float(np.mean(values.get(PROTECT_SECONDS, [0.0]))),
            aggregate_seconds=aggregate,
        )
        self.rounds.append(report)
        metrics = MetricRecord({"clients": len(usable), "dropped": len(dropped)})
        for key, series in values.items():
            metrics[key] = max(series) if key.startswith("pets.epsilon") else float(np.mean(series))
        return metrics
