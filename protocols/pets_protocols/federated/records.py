"""What travels in Flower's ``ArrayRecord``: the global state and one client's update.

The *global state* the strategy keeps between rounds, and sends to the clients,
is the **sum** of the last round's proposals (encrypted, or in the clear for the
DP-only mode), the **count** of clients in it, and the model's **template**
(parameter names and shapes: the architecture, which is public). Its keys::

    pets.sum        uint8 ciphertext bytes (pets envelope) | float64 vector
    pets.count      int64 [m]
    pets.encrypted  int64 [1 | 0]
    pets.template   uint8 JSON {"names": [...], "shapes": [[...], ...]}

A client's reply to a training message holds only ``pets.update``: its
proposal (the global model plus its clipped, noised update) as ciphertext
bytes or, in the DP-only mode, a float64 vector.

Any other ``ArrayRecord`` is a plain model (named arrays): the first round's
public initial weights, or Flower's own FedAvg.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord

import pets

__all__ = [
    "COUNT",
    "ENCRYPTED",
    "SUM",
    "TEMPLATE",
    "UPDATE",
    "GlobalState",
    "Template",
    "from_bytes",
    "is_state",
    "load_state",
    "plain_record",
    "record_parameters",
    "save_state",
    "template_of",
    "to_bytes_array",
]

SUM, COUNT, ENCRYPTED, TEMPLATE, UPDATE = (
    "pets.sum",
    "pets.count",
    "pets.encrypted",
    "pets.template",
    "pets.update",
)

Template = dict[str, tuple[int, ...]]
"""Parameter names and shapes, in order."""


def to_bytes_array(data: bytes) -> Array:
    """Bytes as a uint8 ``Array`` (how ciphertexts ride in an ``ArrayRecord``)."""
    return Array(np.frombuffer(data, dtype=np.uint8).copy())


def from_bytes(array: Array) -> bytes:
    """The bytes held by a uint8 ``Array``."""
    values = array.numpy()
    if values.dtype != np.uint8 or values.ndim != 1:
        raise pets.SerializationError(
            f"expected a 1-D uint8 array of bytes, got {values.dtype} of shape {values.shape}; "
            "the sender does not speak the pets federated protocol"
        )
    return values.tobytes()


def record_parameters(record: ArrayRecord) -> dict[str, npt.NDArray[np.float64]]:
    """The named float64 arrays of a plain model record."""
    return {name: np.asarray(array.numpy(), dtype=np.float64) for name, array in record.items()}


def plain_record(params: Mapping[str, npt.NDArray[np.float64]]) -> ArrayRecord:
    """A plain model record from named arrays."""
    return ArrayRecord({name: Array(np.asarray(value)) for name, value in params.items()})


def is_state(record: ArrayRecord) -> bool:
    """Whether ``record`` is a pets global state (else a plain model)."""
    return COUNT in record


@dataclass(frozen=True)
class GlobalState:
    """The sum of a round's proposals, how many there were, and the model's template."""

    total: bytes | npt.NDArray[np.float64]
    count: int
    template: Template

    @property
    def encrypted(self) -> bool:
        return isinstance(self.total, bytes)

    @property
    def size(self) -> int:
        """Number of model parameters."""
        return int(sum(int(np.prod(shape, dtype=np.int64)) for shape in self.template.values()))

    def to_record(self) -> ArrayRecord:
        total = (
            to_bytes_array(self.total)
            if isinstance(self.total, bytes)
            else Array(np.asarray(self.total, dtype=np.float64))
        )
        template = json.dumps(
            {"names": list(self.template), "shapes": [list(s) for s in self.template.values()]}
        ).encode()
        return ArrayRecord(
            {
                SUM: total,
                COUNT: Array(np.array([self.count], dtype=np.int64)),
                ENCRYPTED: Array(np.array([int(self.encrypted)], dtype=np.int64)),
                TEMPLATE: to_bytes_array(template),
            }
        )

    @classmethod
    def from_record(cls, record: ArrayRecord) -> GlobalState:
        try:
            count = int(record[COUNT].numpy()[0])
            encrypted = bool(record[ENCRYPTED].numpy()[0])
            meta = json.loads(from_bytes(record[TEMPLATE]))
            template = {
                str(name): tuple(int(n) for n in shape)
                for name, shape in zip(meta["names"], meta["shapes"], strict=True)
            }
            total: bytes | npt.NDArray[np.float64] = (
                from_bytes(record[SUM])
                if encrypted
                else np.asarray(record[SUM].numpy(), dtype=np.float64)
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise pets.SerializationError(
                f"a pets global state record is malformed ({exc!r}); it must come from "
                "pets_protocols.federated's strategy"
            ) from exc
        if count < 1:
            raise pets.SerializationError(
                f"a pets global state counts {count} clients; expected >= 1 (it must come "
                "from pets_protocols.federated's strategy)"
            )
        return cls(total, count, template)


def template_of(params: Mapping[str, npt.NDArray[np.float64]]) -> Template:
    """The names and shapes of named arrays."""
    return {name: tuple(np.shape(value)) for name, value in params.items()}


def save_state(record: ArrayRecord, path: str | os.PathLike[str]) -> None:
    """Write a record (e.g. the last global state, still encrypted) to an ``.npz`` file."""
    with open(path, "wb") as handle:
        arrays = {name: array.numpy() for name, array in record.items()}
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def load_state(path: str | os.PathLike[str]) -> ArrayRecord:
    """Read a record written by :func:`save_state` (no pickle is ever loaded)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return ArrayRecord({name: Array(archive[name]) for name in archive.files})
    except (OSError, ValueError) as exc:
        raise pets.SerializationError(
            f"cannot read a federated state from {path}: {exc}; pass a file written by "
            "save_state (the server's state-file)"
        ) from exc
