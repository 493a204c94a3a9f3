"""What a federated run costs and who took part, measured where the server's messages pass.

:class:`MeteredGrid` wraps the Flower ``Grid`` a ServerApp is given: every
message out and every reply in is counted (bytes of its records, per client),
and every error reply is noted with the reason the client gave. The run's
evaluation hook closes each round (:meth:`MeteredGrid.close_round`), which
turns the counts into one :class:`RoundRecord`. The counts are the records'
payload bytes (what Flower serialises), the same under every aggregation mode,
so the modes compare fairly; SecAgg+'s four stages all count toward their round.

Each client says which client it is in a tiny ``pets.who`` record on its replies
(:func:`who_mod`), so the history names clients, not Flower node ids.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["WHO", "MeteredGrid", "RoundRecord", "client_of", "error_reply", "short_reason",
           "who_mod"]

WHO = "pets.who"


@dataclass
class RoundRecord:
    """One round of a federated run: its result, who took part, what it cost."""

    number: int
    #: accuracy and loss of the global model on ``evaluate=(x, y)`` (None without it)
    accuracy: float | None = None
    loss: float | None = None
    #: clients whose update went into the aggregate
    clients: int = 0
    #: one line per client left out: ``"client 3: simulated dropout"``
    dropouts: list[str] = field(default_factory=list)
    #: mean bytes per participating client, server to client and back (all stages)
    bytes_down: float = 0.0
    bytes_up: float = 0.0
    seconds: float = 0.0
    #: the most any client has spent so far (sample-level DP), else None
    epsilon: float | None = None
    #: what the server noticed about the aggregate (e.g. a norm check that failed)
    notes: list[str] = field(default_factory=list)


def short_reason(reason: str | None, limit: int = 240) -> str:
    """The last meaningful line of an error reason (Ray's can be a whole traceback)."""
    lines = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    text = lines[-1] if lines else "no reason given"
    if "Message:" in text:
        text = text.split("Message:", 1)[1].strip().rstrip("'>\"").strip()
    return text[:limit]


def client_of(context: Context) -> int:
    """The client index of a simulated SuperNode (its partition id)."""
    return int(context.node_config["partition-id"])  # type: ignore[arg-type]


def who_mod(message: Message, context: Context,
            call_next: Callable[[Message, Context], Message]) -> Message:
    """Add ``pets.who = {client: i}`` to every reply (the outermost mod)."""
    reply = call_next(message, context)
    if not reply.has_error():
        reply.content[WHO] = ConfigRecord({"client": client_of(context)})
    return reply


def error_reply(message: Message, reason: str) -> Message:
    """A reply standing for a refused one: Flower's strategies and workflows skip it."""
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=message)


def _value_size(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value.encode() if isinstance(value, str) else value)
    if isinstance(value, list):
        return sum(_value_size(item) for item in value)
    return 8  # a number


def _record_size(record: Any) -> int:
    if isinstance(record, ConfigRecord):  # Flower's count_bytes refuses lists (SecAgg+'s)
        return sum(len(key) + _value_size(value) for key, value in record.items())
    return int(record.count_bytes())


def _size(content: RecordDict) -> int:
    return sum(_record_size(record) for name, record in content.items() if name != WHO)


def _metric(content: RecordDict, key: str) -> float | None:
    records: list[Any] = [*content.metric_records.values(), *content.config_records.values()]
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


class MeteredGrid(Grid):
    """A Flower ``Grid`` that counts the bytes and notes the failures of each round."""

    def __init__(self, grid: Grid, *, check: Callable[[Message], str | None] | None = None) -> None:
        self.inner = grid
        self.check = check
        self.records: list[RoundRecord] = []
        self.node_client: dict[int, int] = {}
        self._reset()

    def _reset(self) -> None:
        self._down: dict[int, int] = defaultdict(int)
        self._up: dict[int, int] = defaultdict(int)
        self._failed: dict[int, str] = {}
        self._trained: set[int] = set()
        self._epsilon: dict[int, float] = {}
        self._notes: list[str] = []
        self._started = time.perf_counter()

    # ---- Grid, delegated ---------------------------------------------------------------

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self.inner.create_message(*args, **kwargs)  # type: ignore[no-any-return]

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        for message in messages:
            self._down[message.metadata.dst_node_id] += _size(message.content)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        for reply in replies:
            self._note(reply)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        for message in messages:
            self._down[message.metadata.dst_node_id] += _size(message.content)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        sent = {message.metadata.dst_node_id: message for message in messages}
        answered = set()
        for index, reply in enumerate(replies):
            node = reply.metadata.src_node_id
            answered.add(node)
            self._note(reply)
            reason = None if reply.has_error() or self.check is None else self.check(reply)
            if reason is not None and node in sent:
                self._failed[node] = reason
                replies[index] = error_reply(sent[node], f"{self.name(node)}: {reason}")
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in answered and node not in self._failed:
                self._failed[node] = "no reply before the timeout"
        return replies

    # ---- the round's record -----------------------------------------------------------

    def _note(self, reply: Message) -> None:
        node = reply.metadata.src_node_id
        if reply.has_error():
            self._failed.setdefault(node, short_reason(reply.error.reason))
            return
        self._up[node] += _size(reply.content)
        who = reply.content.config_records.get(WHO)
        if who is not None:
            self.node_client[node] = int(who["client"])  # type: ignore[arg-type]
        epsilon = _metric(reply.content, "epsilon")
        if epsilon is not None:
            self._epsilon[node] = epsilon
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
        masked = configs is not None and Key.MASKED_PARAMETERS in configs
        if any(len(r) for r in reply.content.array_records.values()) or masked:
            self._trained.add(node)  # it sent an update (under SecAgg+: a masked vector)

    def reject(self, node: int, reason: str) -> None:
        """The server left ``node``'s update out (it broke the protocol): say why."""
        self._failed[node] = reason

    def note(self, text: str) -> None:
        """Something the server noticed about this round's aggregate."""
        self._notes.append(text)

    def name(self, node: int) -> str:
        client = self.node_client.get(node)
        return f"client {client}" if client is not None else f"node {node}"

    def close_round(self, number: int, **measures: Any) -> RoundRecord:
        """End round ``number``: its record, with ``measures`` (accuracy, loss) added."""
        notes = [*self._notes, *measures.pop("notes", [])]
        nodes = set(self._down) | set(self._up)
        took_part = [n for n in nodes if n not in self._failed] or list(nodes)
        count = max(1, len(took_part))
        record = RoundRecord(
            number=number,
            clients=len([n for n in took_part if n in self._trained]),
            dropouts=sorted(
                f"{self.name(n)}: {reason.removeprefix(self.name(n) + ': ')}"
                for n, reason in self._failed.items()
            ),
            bytes_down=sum(self._down[n] for n in took_part) / count,
            bytes_up=sum(self._up[n] for n in took_part) / count,
            seconds=time.perf_counter() - self._started,
            epsilon=max(self._epsilon.values()) if self._epsilon else None,
            notes=notes,
            **measures,
        )
        self.records.append(record)
        self._reset()
        return record
