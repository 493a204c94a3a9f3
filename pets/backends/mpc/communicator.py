"""The communicator CrypTen's tensors talk through: framed, timed out, counted.

CrypTen's own ``DistributedCommunicator`` runs every collective through
``torch.distributed`` with no timeout (a dead party hangs the rest), lets a
shape mismatch between parties corrupt data or abort gloo, and counts an
all-reduce twice. This one keeps CrypTen's interface (its tensors and providers
call the same methods) but builds every exchange from point-to-point gloo
messages, each preceded by a small header (protocol, operation, sequence
number, dtype, shapes) that the receiver checks before it accepts the data:

* a peer that died or never answers gives :class:`~pets.errors.PartyError`
  naming that peer, within the configured timeout (gloo's own timeout on each
  wait; a closed connection fails at once);
* parties whose shapes differ get :class:`~pets.errors.ShapeMismatchError`
  naming both shapes, parties out of step get a :class:`PartyError`;
* every message is encrypted and authenticated on its way
  (:mod:`pets.backends.mpc.channel`, keyed from the run secret): a forged or
  altered message is an :class:`~pets.errors.AuthenticationError`;
* every byte handed to the wire or taken from it is counted exactly (payload
  plus the 128-byte header per message, and the channel's 16-byte tag on each
  of them; gloo's own ~48-byte framing per message is not), sent and received
  apart, and each exchange this party takes part in is one round.

Bytes to and from the dealer (TTP requests, triples, seeds) are *offline*
traffic and are counted apart, in ``Measurement.extra["offline_bytes"]`` and
``["offline_rounds"]``, since the Beaver bound concerns online bytes only.

Collectives, for ``P`` parties and a tensor of ``b`` bytes (bytes this party sends):

==============  ===========================  =====
collective      how                          bytes
==============  ===========================  =====
all_reduce      every party sends its share  (P-1) b
                to every other, sums locally
reduce          to ``dst`` only              b (``dst``: 0)
broadcast       ``src`` sends to each        (P-1) b at ``src``, 0 elsewhere
gather          to ``dst``                   b (``dst``: 0)
all_gather      to every other               (P-1) b
scatter         ``src`` sends each its part  (P-1) b at ``src``
==============  ===========================  =====

For two parties this equals gloo's ring all-reduce in bytes and takes one
message step instead of two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from pets.backends.mpc import messages
from pets.backends.mpc.channel import TAG_BYTES, Channel
from pets.errors import PartyError, ProtocolError, ShapeMismatchError
from pets.measure import record_bytes, record_extra, record_received, record_round
from pets.network import delay_exchange

__all__ = ["HEADER_BYTES", "OFFLINE", "PartyCommunicator", "record_offline"]

_SLOTS = 16
#: Bytes of the header that precedes every message (16 int64).
HEADER_BYTES = _SLOTS * 8
_MAGIC = 0x7065747301  # "pets" and protocol version 1
_OPS = ("all_reduce", "reduce", "broadcast", "gather", "all_gather", "scatter", "barrier",
        "send_obj", "broadcast_obj")
_DTYPES = (torch.int64, torch.uint8, torch.int32, torch.float32, torch.float64, torch.bool,
           torch.int8)
#: How long the dealer waits for party 0's next request (it may compute for long).
DEALER_IDLE = timedelta(days=1)

Shape = tuple[int, ...]


class _Group:
    """Marker CrypTen passes back as ``group=``: the parties, or party 0 with the dealer."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


PARTIES = _Group("parties")
DEALER_LINK = _Group("party 0 and the dealer")
#: the parties' own offline traffic (provider "he" makes triples between them): counted apart
OFFLINE = _Group("the parties, offline")


def record_offline(count: int, rounds: int) -> None:
    """Count dealer traffic in every active ``pets.measure()``, apart from online bytes."""
    record_extra("offline_bytes", count)
    record_extra("offline_rounds", rounds)


def _plain(x: Any) -> torch.Tensor:
    """The CPU torch tensor behind a share (CrypTen's CUDALongTensor included)."""
    tensor = x if isinstance(x, torch.Tensor) else x.data
    return tensor.detach().cpu().contiguous()


def _like(template: Any, values: torch.Tensor) -> Any:
    """``values`` on ``template``'s device and of its type."""
    if isinstance(template, torch.Tensor):
        return values.to(template.device)
    return type(template)(values.to(template.device))


def _stable_hash(shapes: Sequence[Shape]) -> int:
    digest = hashlib.blake2b(repr(list(shapes)).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def _reducer(op: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if op in (None, dist.ReduceOp.SUM):
        return torch.add
    if op == dist.ReduceOp.BXOR:
        return torch.bitwise_xor
    raise PartyError(f"reduction {op} is not supported by the pets communicator (SUM, BXOR)")


class PartyCommunicator:
    """CrypTen's communicator interface over gloo point-to-point messages.

    ``rank`` and ``parties`` are this party's place; ``dealer`` is the dealer's
    rank (``parties``) when a trusted third party serves triples, else ``None``.
    ``parties == 1`` is the one-process mode: every collective returns its input.
    """

    instance: ClassVar[PartyCommunicator | None] = None
    BYTES_PER_ELEMENT = 8

    def __init__(self, *, rank: int, parties: int, dealer: int | None, timeout: float,
                 channel: Channel | None = None) -> None:
        self.rank = rank
        self._channel = channel
        self._tag = 0 if channel is None else TAG_BYTES  # what sealing adds to each message
        self.world_size = parties
        self.dealer = dealer
        self.timeout = timeout
        self.ttp_group = dist.group.WORLD if parties > 1 else None
        self.ttp_comm_group = DEALER_LINK
        self.main_group = PARTIES
        self.ttp_initialized = dealer is not None
        self._name = f"rank{rank}"
        self._sequence = {PARTIES.name: 0, DEALER_LINK.name: 0}
        self.reset_communication_stats()

    # --- CrypTen's class-level interface ------------------------------------------

    @classmethod
    def is_initialized(cls) -> bool:
        return cls.instance is not None

    @classmethod
    def get(cls) -> PartyCommunicator | None:
        return cls.instance

    def get_world_size(self) -> int:
        return self.world_size

    def get_rank(self) -> int:
        return self.rank

    def get_ttp_rank(self) -> int:
        return self.world_size

    def set_name(self, name: str) -> None:
        self._name = name

    def get_name(self) -> str:
        return self._name

    def get_distributed_backend(self) -> str:
        return "gloo"

    def reset_communication_stats(self) -> None:
        self.comm_rounds = self.comm_bytes = self.offline_rounds = self.offline_bytes = 0
        self.comm_time = 0.0

    def get_communication_stats(self) -> dict[str, float]:
        """Bytes this party sent and rounds it took part in since the last reset."""
        return {"rounds": self.comm_rounds, "bytes": self.comm_bytes, "time": self.comm_time,
                "offline_rounds": self.offline_rounds, "offline_bytes": self.offline_bytes}

    def print_communication_stats(self) -> None:
        import logging

        logging.getLogger(__name__).info("party %d: %s", self.rank,
                                         self.get_communication_stats())

    # --- naming and errors --------------------------------------------------------

    def describe(self, rank: int) -> str:
        return f"the dealer (rank {rank})" if rank == self.dealer else f"party {rank}"

    def _lost(self, peer: int, what: str, exc: Exception) -> PartyError:
        text = str(exc)
        if "Timed out" in text or "timed out" in text:
            return PartyError(
                f"{self.describe(self.rank)}: {self.describe(peer)} did not answer within "
                f"{self.timeout:g} s during {what}; it stopped, is stuck, or is slower than "
                f"the timeout: check its log, or raise timeout="
            )
        return PartyError(
            f"{self.describe(self.rank)}: lost the connection to {self.describe(peer)} during "
            f"{what} (it closed or died); check its log"
        )

    def _wait(self, work: Any, peer: int, what: str, *, idle: bool = False) -> None:
        try:
            if idle:
                work.wait(DEALER_IDLE)
            else:
                work.wait()
        except RuntimeError as exc:
            raise self._lost(peer, what, exc) from exc

    # --- the wire: every message sealed by the channel (when there is one) --------------

    def _post_send(self, tensor: torch.Tensor, peer: int) -> tuple[Any, torch.Tensor]:
        """Start sending ``tensor`` to ``peer``; the work and the bytes on the wire (keep them
        alive until the work is done)."""
        wire = tensor if self._channel is None else self._channel.seal(tensor, peer)
        return dist.isend(wire, peer), wire

    def _post_recv(self, into: torch.Tensor, peer: int) -> _Receive:
        """Start receiving ``peer``'s next message into ``into`` (opened by :meth:`_finish`)."""
        if self._channel is None:
            return _Receive(dist.irecv(into, peer), into, None, 0)
        buffer, number = self._channel.expect(into, peer)
        return _Receive(dist.irecv(buffer, peer), into, buffer, number)

    def _finish(self, receive: _Receive, peer: int, what: str, *, idle: bool = False) -> None:
        self._wait(receive.work, peer, what, idle=idle)
        if self._channel is not None and receive.buffer is not None:
            self._channel.open(receive.buffer, receive.number, receive.into, peer,
                               self.describe(peer))

    # --- framing ------------------------------------------------------------------

    def _header(self, op: str, seq: int, dtype: torch.dtype,
                shapes: Sequence[Shape]) -> torch.Tensor:
        header = torch.zeros(_SLOTS, dtype=torch.int64)
        flat: list[int] = []
        for shape in shapes:
            flat += [len(shape), *shape]
        header[:5] = torch.tensor([_MAGIC, _OPS.index(op), seq, _DTYPES.index(dtype), len(shapes)])
        if 5 + len(flat) <= _SLOTS:
            header[5:5 + len(flat)] = torch.tensor(flat, dtype=torch.int64)
        else:
            header[5:7] = torch.tensor([-1, _stable_hash(shapes)])
        return header

    @staticmethod
    def _shapes(header: torch.Tensor) -> list[Shape] | None:
        """The shapes a header announces, ``None`` for "too many to list"; a
        :class:`ProtocolError` for a header no pets party writes."""
        values = header.tolist()
        if values[5] == -1:
            return None
        count = values[4]
        if not 0 <= count <= _SLOTS:
            raise ProtocolError(f"a peer's header announces {count} tensors")
        shapes, i = [], 5
        for _ in range(count):
            ndim = values[i] if i < _SLOTS else -1
            if not 0 <= ndim <= _SLOTS - i - 1:
                raise ProtocolError("a peer's header announces a shape it does not hold")
            shape = tuple(values[i + 1:i + 1 + ndim])
            messages.check_size(list(shape))
            shapes.append(shape)
            i += 1 + ndim
        return shapes

    def _check(self, header: torch.Tensor, peer: int, op: str, seq: int,
               expected: Sequence[Shape] | None) -> list[Shape]:
        magic, their_op, their_seq, their_dtype, count = header[:5].tolist()
        who = self.describe(peer)
        if magic != _MAGIC:
            raise ProtocolError(f"party {self.rank}: {who} speaks another protocol "
                                f"(header {magic:#x}); run the same pets version everywhere")
        if not (0 <= their_op < len(_OPS) and 0 <= their_dtype < len(_DTYPES)):
            raise ProtocolError(f"party {self.rank}: {who} sent a header with operation "
                                f"{their_op} and dtype {their_dtype}, which no pets party writes")
        if their_op != _OPS.index(op) or their_seq != seq:
            raise PartyError(
                f"parties out of step: party {self.rank} is in {op} #{seq}, {who} in "
                f"{_OPS[their_op]} #{their_seq}; every party must run the same private "
                f"operations in the same order"
            )
        theirs = self._shapes(header)
        if expected is None:
            if theirs is None:
                raise ProtocolError(f"party {self.rank}: {who} sent too many shapes to describe")
            if _DTYPES[their_dtype] != torch.uint8 or len(theirs) != 1 or (
                    theirs[0] and (len(theirs[0]) != 1
                                   or theirs[0][0] > messages.MAX_OBJECT_BYTES)):
                raise ProtocolError(f"party {self.rank}: {who} announced a message of "
                                    f"{theirs} where one object of at most "
                                    f"{messages.MAX_OBJECT_BYTES} bytes belongs")
            return theirs
        same = (theirs == [tuple(s) for s in expected] if theirs is not None
                else int(header[6]) == _stable_hash(expected) and count == len(expected))
        if not same:
            mine = ", ".join(str(tuple(s)) for s in expected)
            there = ", ".join(str(s) for s in theirs) if theirs else "other shapes"
            raise ShapeMismatchError(
                f"party {self.rank} and {who} disagree on shapes in {op} #{seq}: {mine} here, "
                f"{there} there; every party must run the same computation on tensors of the "
                f"same shapes (check each party's plain operands and batch sizes)"
            )
        return list(expected)

    def _exchange(self, op: str, sends: dict[int, list[torch.Tensor]],
                  receives: dict[int, Sequence[Shape] | None], dtype: torch.dtype, *,
                  offline: bool = False, idle: bool = False) -> dict[int, list[torch.Tensor]]:
        """One round: send framed tensors to some peers, receive framed ones from others.

        ``receives`` maps a peer to the shapes expected from it (``None``: any).
        """
        link = DEALER_LINK.name if offline else PARTIES.name
        seq = self._sequence[link]
        self._sequence[link] += 1
        what = f"{op} #{seq}"
        keep: list[torch.Tensor] = []
        pending: list[tuple[Any, int]] = []
        sent = 0
        for peer, tensors in sends.items():
            header = self._header(op, seq, dtype, [tuple(t.shape) for t in tensors])
            keep += [header, *tensors]
            for t in (header, *tensors):
                work, wire = self._post_send(t, peer)
                keep.append(wire)
                pending.append((work, peer))
                sent += wire.numel() * wire.element_size()
        headers = {peer: torch.empty(_SLOTS, dtype=torch.int64) for peer in receives}
        posted = {peer: self._post_recv(h, peer) for peer, h in headers.items()}
        received: dict[int, list[torch.Tensor]] = {}
        for peer, receive in posted.items():
            self._finish(receive, peer, what, idle=idle)
            header = headers[peer]
            shapes = self._check(header, peer, op, seq, receives[peer])
            their_dtype = _DTYPES[int(header[3])]
            if their_dtype != dtype and receives[peer] is not None:
                raise ProtocolError(f"party {self.rank}: {self.describe(peer)} sent {their_dtype} "
                                 f"in {what}, this party expected {dtype}")
            received[peer] = [torch.empty(s, dtype=their_dtype) for s in shapes]
        for peer, tensors in received.items():
            for t in tensors:
                self._finish(self._post_recv(t, peer), peer, what)
        for work, peer in pending:
            self._wait(work, peer, what)
        got = sum(_SLOTS * 8 + self._tag + sum(t.numel() * t.element_size() + self._tag
                                               for t in tensors)
                  for tensors in received.values())
        self._count(sent, offline=offline, received=got)
        return received

    def _count(self, sent: int, *, offline: bool, rounds: int = 1, received: int = 0) -> None:
        if not offline:  # pets.network(...): an emulated link delays each exchange
            delay_exchange(sent, received, waited=rounds > 0)
        if offline:
            self.offline_bytes += sent
            self.offline_rounds += rounds
            record_offline(sent, rounds)
        else:
            self.comm_bytes += sent
            self.comm_rounds += rounds
            record_bytes(sent)
            record_received(received)
            record_round(rounds)

    def _others(self) -> list[int]:
        return [r for r in range(self.world_size) if r != self.rank]

    def _offline(self, group: Any, peer: int | None = None) -> bool:
        return group is DEALER_LINK or group is OFFLINE or peer == self.dealer or (
            group is not None and group is not PARTIES and self.dealer is not None)

    # --- collectives CrypTen calls ------------------------------------------------

    def all_reduce(self, input: Any, op: Any = None, batched: bool = False) -> Any:
        """Sum (or xor) each party's share; every party gets the result."""
        items = list(input) if batched else [input]
        if self.world_size == 1:
            result = [x.clone() for x in items]
            return result if batched else result[0]
        mine = [_plain(x) for x in items]
        shapes = [tuple(t.shape) for t in mine]
        got = self._exchange("all_reduce", {p: mine for p in self._others()},
                             {p: shapes for p in self._others()}, mine[0].dtype)
        reduce = _reducer(op)
        totals = list(mine)
        for peer in sorted(got):
            totals = [reduce(a, b) for a, b in zip(totals, got[peer], strict=True)]
        result = [_like(x, t) for x, t in zip(items, totals, strict=True)]
        return result if batched else result[0]

    def reduce(self, input: Any, dst: int, op: Any = None, batched: bool = False) -> Any:
        """Sum (or xor) the shares at party ``dst`` only; the others get ``None``."""
        items = list(input) if batched else [input]
        if self.world_size == 1:
            result = [x.clone() for x in items]
            return result if batched else result[0]
        mine = [_plain(x) for x in items]
        shapes = [tuple(t.shape) for t in mine]
        if self.rank != dst:
            self._exchange("reduce", {dst: mine}, {}, mine[0].dtype)
            return None
        got = self._exchange("reduce", {}, {p: shapes for p in self._others()}, mine[0].dtype)
        reduce = _reducer(op)
        totals = list(mine)
        for peer in sorted(got):
            totals = [reduce(a, b) for a, b in zip(totals, got[peer], strict=True)]
        result = [_like(x, t) for x, t in zip(items, totals, strict=True)]
        return result if batched else result[0]

    def broadcast(self, input: Any, src: int, group: Any = None, batched: bool = False) -> Any:
        """Party ``src``'s tensor(s) to every member of ``group`` (the parties by default)."""
        items = list(input) if batched else [input]
        offline = self._offline(group, src)
        members = ([0, self.world_size] if group is DEALER_LINK
                   else list(range(self.world_size)))
        if len(members) == 1:
            return input
        mine = [_plain(x) for x in items]
        if self.rank == src:
            self._exchange("broadcast", {p: mine for p in members if p != src}, {},
                           mine[0].dtype, offline=offline)
            return input
        got = self._exchange("broadcast", {}, {src: [tuple(t.shape) for t in mine]},
                             mine[0].dtype, offline=offline)[src]
        for x, values in zip(items, got, strict=True):
            target = x if isinstance(x, torch.Tensor) else x.data
            target.copy_(values.to(target.device))
        return input

    def gather(self, tensor: Any, dst: int) -> list[Any]:
        """Every party's tensor, in rank order, at party ``dst`` (``[None]`` elsewhere)."""
        if self.world_size == 1:
            return [tensor]
        mine = _plain(tensor)
        if self.rank != dst:
            self._exchange("gather", {dst: [mine]}, {}, mine.dtype)
            return [None]
        got = self._exchange("gather", {}, {p: [tuple(mine.shape)] for p in self._others()},
                             mine.dtype)
        return [tensor if r == self.rank else _like(tensor, got[r][0])
                for r in range(self.world_size)]

    def all_gather(self, tensor: Any) -> list[Any]:
        """Every party's tensor, in rank order, at every party."""
        if self.world_size == 1:
            return [tensor]
        mine = _plain(tensor)
        got = self._exchange("all_gather", {p: [mine] for p in self._others()},
                             {p: [tuple(mine.shape)] for p in self._others()}, mine.dtype)
        return [tensor if r == self.rank else _like(tensor, got[r][0])
                for r in range(self.world_size)]

    def scatter(self, scatter_list: Sequence[Any], src: int, size: Any = None,
                device: Any = None) -> Any:
        """Party ``src`` sends ``scatter_list[r]`` to party ``r``; each gets its part."""
        if self.world_size == 1:
            return scatter_list[0]
        if self.rank == src:
            parts = [_plain(x) for x in scatter_list]
            self._exchange("scatter", {p: [parts[p]] for p in self._others()}, {},
                           parts[0].dtype)
            return scatter_list[src]
        if size is None:
            size = scatter_list[self.rank].size()
        got = self._exchange("scatter", {}, {src: [tuple(size)]}, torch.int64)[src][0]
        return got if device is None else got.to(device)

    def barrier(self) -> None:
        """Wait until every party reaches this point."""
        if self.world_size > 1:
            nothing = torch.zeros(0, dtype=torch.int64)
            self._exchange("barrier", {p: [nothing] for p in self._others()},
                           {p: [(0,)] for p in self._others()}, torch.int64)

    # --- point to point (CrypTen's replicated sharing and seed set-up) ------------

    def send(self, tensor: Any, dst: int) -> None:
        work, wire = self._post_send(_plain(tensor), dst)
        self._wait(work, dst, "send")
        self._count(wire.numel(), offline=self._offline(None, dst), rounds=0)

    def recv(self, tensor: Any, src: int | None = None) -> Any:
        if src is None:
            raise PartyError("recv from any party is not supported: name the source party")
        result = _plain(tensor).clone()
        self._finish(self._post_recv(result, src), src, "recv")
        self._count(0, offline=self._offline(None, src),
                    received=result.numel() * result.element_size() + self._tag)
        return _like(tensor, result)

    def isend(self, tensor: Any, dst: int) -> Any:
        work, wire = self._post_send(_plain(tensor), dst)
        # a send alone is no round: the irecv it is paired with counts one
        self._count(wire.numel(), offline=self._offline(None, dst), rounds=0)
        return _Waiting(self, _Receive(work, wire, None, 0), dst, "isend")

    def irecv(self, tensor: Any, src: int | None = None) -> Any:
        if src is None or not isinstance(tensor, torch.Tensor):
            raise PartyError("irecv needs a CPU tensor and a named source party")
        self._count(0, offline=self._offline(None, src),
                    received=tensor.numel() * tensor.element_size() + self._tag)
        return _Waiting(self, self._post_recv(tensor, src), src, "irecv")

    # --- objects ------------------------------------------------------------------

    def send_obj(self, obj: Any, dst: int, group: Any = None) -> None:
        data = _encoded(obj)
        self._exchange("send_obj", {dst: [data]}, {}, torch.uint8,
                       offline=self._offline(group, dst))

    def recv_obj(self, src: int, group: Any = None) -> Any:
        got = self._exchange("send_obj", {}, {src: None}, torch.uint8,
                             offline=self._offline(group, src), idle=src == 0 and
                             self.rank == self.dealer)[src][0]
        return _loads(got)

    def broadcast_obj(self, obj: Any, src: int, group: Any = None) -> Any:
        if self.world_size == 1:
            return obj
        if self.rank == src:
            data = _encoded(obj)
            self._exchange("broadcast_obj", {p: [data] for p in self._others()}, {}, torch.uint8)
            return obj
        got = self._exchange("broadcast_obj", {}, {src: None}, torch.uint8)[src][0]
        return _loads(got)


def _encoded(obj: Any) -> torch.Tensor:
    return torch.frombuffer(bytearray(messages.encode(obj)), dtype=torch.uint8)


def _loads(data: torch.Tensor) -> Any:
    """The typed object a peer sent (:mod:`pets.backends.mpc.messages`): never unpickled."""
    return messages.decode(data.numpy().tobytes())


@dataclass
class _Receive:
    """A posted gloo operation: its work, the tensor it fills (or sends), and for a sealed
    receive the buffer the ciphertext lands in and its number on the link."""

    work: Any
    into: torch.Tensor
    buffer: torch.Tensor | None
    number: int


class _Waiting:
    """A pending send or receive whose ``wait`` turns gloo errors into ``PartyError`` and
    opens a sealed message into its tensor."""

    def __init__(self, comm: PartyCommunicator, operation: _Receive, peer: int,
                 what: str) -> None:
        self._comm, self._operation, self._peer, self._what = comm, operation, peer, what

    def wait(self) -> None:
        self._comm._finish(self._operation, self._peer, self._what)

    def is_completed(self) -> bool:
        return bool(self._operation.work.is_completed())
