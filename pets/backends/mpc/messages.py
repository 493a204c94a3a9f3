"""The small objects parties and the dealer send each other, as typed JSON: never a pickle.

CrypTen's trusted-third-party provider sends party 0's triple requests to the
dealer (``{"function": "additive", "args": (size0, size1, "mul"), ...}``) and the
dealer answers with a ``torch.Size``; CrypTen's sharing broadcasts sizes. Those
travel through :meth:`PartyCommunicator.send_obj` and friends, which CrypTen
built on pickle (its "restricted" unpickler still builds any registered class: a
40-byte payload made it allocate ``nn.Linear(60000, 60000)``, 14.4 GB).

Here an object is encoded as JSON with tags for the few non-JSON types parties
send (tuples, ``torch.Size``, dictionaries, and bytes, which travel as raw blobs
after the JSON: an HE backend's keys and ciphertexts), at most
:data:`MAX_DEPTH` deep, the JSON at most :data:`MAX_JSON_BYTES` and the whole
message at most :data:`MAX_OBJECT_BYTES`::

    JSON length (4 bytes, big-endian) | {"value": tagged, "blobs": [lengths]} | blobs

Decoding builds only ``None``, booleans, numbers, strings, bytes, lists, tuples,
dictionaries and ``torch.Size``; anything else, or anything larger, is a
:class:`~pets.errors.ProtocolError`. Sending any other type is refused before it
leaves.

>>> import torch
>>> decode(encode({"function": "square", "args": (torch.Size([2, 3]),), "kwargs": {}}))
{'function': 'square', 'args': (torch.Size([2, 3]),), 'kwargs': {}}
>>> decode(b"\\x80\\x04cbuiltins\\neval\\n.")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pets.errors.ProtocolError: a peer sent a message that is not pets' typed JSON ...
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from pets.errors import ProtocolError

__all__ = ["MAX_DEPTH", "MAX_ELEMENTS", "MAX_JSON_BYTES", "MAX_OBJECT_BYTES", "check_size",
           "decode", "encode"]

#: Largest JSON part (a triple request is about 200 bytes; a training step's batch of them,
#: pets.backends.mpc.prefetch, some hundred kilobytes).
MAX_JSON_BYTES = 4 * 2**20
#: Largest message, blobs included (an HE backend's public keys are some megabytes).
MAX_OBJECT_BYTES = 2**30
#: Deepest nesting of lists, tuples and dictionaries.
MAX_DEPTH = 8
#: Most elements a size sent between parties may describe (2**28 int64: 2 GiB).
MAX_ELEMENTS = 2**28
_INT64 = 2**63


def encode(obj: Any) -> bytes:
    """``obj`` as typed JSON and blobs; a :class:`ProtocolError` for a type parties never send."""
    blobs: list[bytes] = []
    tagged = _tagged(obj, 0, blobs)
    body = json.dumps({"value": tagged, "blobs": [len(b) for b in blobs]},
                      separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_JSON_BYTES or 4 + len(body) + sum(map(len, blobs)) > MAX_OBJECT_BYTES:
        raise ProtocolError(f"a message of {len(body)} bytes of JSON and "
                            f"{sum(map(len, blobs))} of blobs is larger than parties send each "
                            f"other ({MAX_JSON_BYTES} and {MAX_OBJECT_BYTES} in all)")
    return len(body).to_bytes(4, "big") + body + b"".join(blobs)


def _tagged(obj: Any, depth: int, blobs: list[bytes]) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a message nested deeper than {MAX_DEPTH} cannot be sent")
    if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
        obj = obj.item()  # numpy scalars travel as Python numbers
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        if not -_INT64 <= obj < _INT64:
            raise ProtocolError(f"an integer beyond 64 bits cannot be sent: {obj}")
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}  # inf, -inf, nan
    if isinstance(obj, (bytes, bytearray, memoryview)):
        blobs.append(bytes(obj))
        return {"bytes": len(blobs) - 1}
    if isinstance(obj, torch.Size):
        return {"size": [int(n) for n in obj]}
    if isinstance(obj, tuple):
        return {"tuple": [_tagged(v, depth + 1, blobs) for v in obj]}
    if isinstance(obj, list):
        return [_tagged(v, depth + 1, blobs) for v in obj]
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"dict": [[k, _tagged(v, depth + 1, blobs)] for k, v in obj.items()]}
    raise ProtocolError(f"a {type(obj).__name__} cannot be sent between parties: only numbers, "
                        "strings, bytes, lists, tuples, dictionaries and torch.Size travel (no "
                        "pickle)")


_NOT_OURS = ("a peer sent a message that is not pets' typed JSON (a pickle, or corrupt bytes); "
             "nothing of it was used: every party must run the same pets version")


def decode(data: bytes) -> Any:
    """The object ``data`` encodes, or a :class:`ProtocolError`; nothing else is built."""
    if len(data) > MAX_OBJECT_BYTES:
        raise ProtocolError(f"a peer sent a message of {len(data)} bytes, more than the "
                            f"{MAX_OBJECT_BYTES} parties send each other")
    length = int.from_bytes(data[:4], "big") if len(data) >= 4 else -1
    if not 0 < length <= min(MAX_JSON_BYTES, len(data) - 4):
        raise ProtocolError(_NOT_OURS)
    try:
        top = json.loads(data[4:4 + length].decode("utf-8"), parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(_NOT_OURS) from None
    if not (isinstance(top, dict) and set(top) == {"value", "blobs"}
            and isinstance(top["blobs"], list) and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in top["blobs"])
            and sum(top["blobs"]) == len(data) - 4 - length):
        raise ProtocolError("a peer sent a message whose parts do not add up to its length")
    blobs, offset = [], 4 + length
    for size in top["blobs"]:
        blobs.append(bytes(data[offset:offset + size]))
        offset += size
    return _untagged(top["value"], 0, blobs)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _untagged(raw: Any, depth: int, blobs: list[bytes]) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a peer sent a message nested deeper than {MAX_DEPTH}")
    if raw is None or isinstance(raw, (bool, str, float)):
        return raw
    if isinstance(raw, int):
        if not -_INT64 <= raw < _INT64:
            raise ProtocolError("a peer sent an integer beyond 64 bits")
        return raw
    if isinstance(raw, list):
        return [_untagged(v, depth + 1, blobs) for v in raw]
    if isinstance(raw, dict) and len(raw) == 1:
        (tag, value), = raw.items()
        if tag == "bytes" and isinstance(value, int) and not isinstance(value, bool) and (
                0 <= value < len(blobs)):
            return blobs[value]
        if tag == "float" and value in ("inf", "-inf", "nan"):
            return float(value)
        if tag == "size" and isinstance(value, list):
            return check_size(value)
        if tag == "tuple" and isinstance(value, list):
            return tuple(_untagged(v, depth + 1, blobs) for v in value)
        if tag == "dict" and isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value
        ):
            return {k: _untagged(v, depth + 1, blobs) for k, v in value}
    raise ProtocolError("a peer sent a message with a value of no known type; nothing of it "
                        "was used")


def check_size(dims: Any) -> torch.Size:
    """``dims`` as a ``torch.Size`` of at most 8 non-negative dimensions and
    :data:`MAX_ELEMENTS` elements, or a :class:`ProtocolError`."""
    if not (isinstance(dims, (list, tuple)) and len(dims) <= 8 and all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ELEMENTS for n in dims
    )):
        raise ProtocolError(f"a peer sent a size that is not up to 8 dimensions of 0 to "
                            f"{MAX_ELEMENTS}: {str(dims)[:80]}")
    if math.prod(dims) > MAX_ELEMENTS:
        raise ProtocolError(f"a peer sent a size of {math.prod(dims)} elements, more than the "
                            f"{MAX_ELEMENTS} a message between parties may hold")
    return torch.Size(dims)
