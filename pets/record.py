"""A hash-chained run record for audits: what ran, on which data, with which protection.

Record-keeping duties (the EU AI Act's logs for high-risk systems) and privacy
reviews ask what was run on which data under which protection. ``pets.record``
appends one JSON line per training, inference, release or audit run: what ran,
its parameters, the epsilon and delta spent, which party held which keys, and
SHA-256 fingerprints of the inputs and outputs (never the data itself).

Each line carries ``prev``, the SHA-256 of the line before it (64 zeros on the
first line), and its own ``index``: editing, removing or reordering any line but
the last breaks the chain at the next line, which :func:`verify_record` (and
``pets verify-record PATH``) reports by line number. What an unkeyed chain
cannot show, and the fixes:

* the *last* line has no successor: editing it, or removing the last lines,
  leaves a valid chain. Every verification reports the head (the hash of the
  last line) and the line count: keep them somewhere else, e.g. in a ticket or a
  signed release note, and pass the head to ``verify_record(path, head=...)``;
* anyone who can write the file can rebuild a consistent chain: give a
  ``key`` (or set ``PETS_RECORD_KEY_FILE`` to a file holding one: the record is
  then keyed by default) and each line also carries an HMAC-SHA256 that only key
  holders can make or check.

Appends hold an exclusive lock (the ``filelock`` package, on ``<path>.lock``) and
write each line with one ``write`` call and an ``fsync``, so concurrent
processes never interleave lines.

>>> import os, tempfile, numpy as np, pets
>>> path = os.path.join(tempfile.mkdtemp(), "runs.jsonl")
>>> with pets.record(path) as rec:
...     entry = rec.log("release", what="noisy count", epsilon=0.5,
...                     inputs={"counts": np.array([3, 4])}, outputs={"noisy": 7.2})
>>> report = pets.verify_record(path)
>>> report.entries, report.head == entry.hash
(1, True)
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import filelock
import numpy as np

from pets.errors import SerializationError

__all__ = ["KEY_FILE_VARIABLE", "RecordEntry", "RecordReport", "RunRecord", "configured_key",
           "fingerprint", "record", "verify_record"]

logger = logging.getLogger(__name__)

VERSION = 1
GENESIS = "0" * 64
_CHUNK = 4096
_FIELDS = ("version", "index", "time", "kind", "prev")
#: Environment variable naming a file that holds the record's HMAC key (keyed by default).
KEY_FILE_VARIABLE = "PETS_RECORD_KEY_FILE"


def configured_key() -> bytes | None:
    """The key in the file ``$PETS_RECORD_KEY_FILE`` names, or ``None`` when it is not set."""
    name = os.environ.get(KEY_FILE_VARIABLE)
    if not name:
        return None
    try:
        return Path(name).read_bytes().strip()
    except OSError as exc:
        raise SerializationError(
            f"cannot read the record key file {name} named by {KEY_FILE_VARIABLE}: "
            f"{exc.strerror}. Fix: point {KEY_FILE_VARIABLE} at the file holding the record's "
            "key, or unset it."
        ) from exc


def _canonical(content: Mapping[str, Any]) -> bytes:
    """The one byte string a line's content is written as (sorted keys, no spaces)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _mac(key: bytes, content: Mapping[str, Any]) -> str:
    body = {k: v for k, v in content.items() if k != "mac"}
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


# --- fingerprints ----------------------------------------------------------------


def _hash_array(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise SerializationError(
            "cannot fingerprint an array of Python objects. Fix: convert it to a numeric "
            "or string dtype first."
        )
    digest = hashlib.sha256()
    digest.update(f"ndarray|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """``"sha256:<hex>"`` of data, so a record names what it used without holding it.

    Arrays (numpy, torch, anything with ``__array__``) hash their dtype, shape
    and bytes; a torch module its ``state_dict``; a private tensor its
    ``to_bytes()``; a :class:`pathlib.Path` the file's bytes; ``str`` its UTF-8;
    lists, tuples and dicts their elements' fingerprints.

    >>> import numpy as np
    >>> from pets.record import fingerprint
    >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3)), fingerprint(b"")[:15]
    (True, 'sha256:e3b0c442')
    """
    return f"sha256:{_digest(value)}"


def _digest(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Path):
        digest = hashlib.sha256()
        try:
            with value.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise SerializationError(
                f"cannot read {value} to fingerprint it: {exc.strerror}. Fix: pass an "
                "existing file, or the data itself."
            ) from exc
        return digest.hexdigest()
    if isinstance(value, str):
        return hashlib.sha256(value.encode("utf-8")).hexdigest()
    if value is None or isinstance(value, (bool, int, float, np.number)):
        scalar = value.item() if isinstance(value, np.number) else value
        return hashlib.sha256(_canonical({"scalar": _json_value(scalar, "value")})).hexdigest()
    if isinstance(value, np.ndarray):
        return _hash_array(value)
    state_dict = getattr(value, "state_dict", None)
    if callable(state_dict) and hasattr(value, "parameters"):  # a torch module
        return _digest({name: tensor for name, tensor in state_dict().items()})
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor
        return _hash_array(detach().cpu().numpy())
    to_bytes = getattr(value, "to_bytes", None)
    if callable(to_bytes):  # a pets PrivateTensor or backend
        return hashlib.sha256(to_bytes()).hexdigest()
    if hasattr(value, "__array__"):
        return _hash_array(np.asarray(value))
    if isinstance(value, Mapping):
        parts = {str(k): _digest(v) for k, v in value.items()}
        return hashlib.sha256(_canonical({"mapping": parts})).hexdigest()
    if isinstance(value, (list, tuple)):
        return hashlib.sha256(_canonical({"sequence": [_digest(v) for v in value]})).hexdigest()
    raise SerializationError(
        f"cannot fingerprint a {type(value).__name__}. Fix: pass bytes, a str, a Path, a "
        "numpy array, a torch tensor or module, a private tensor, or a list/dict of those."
    )


# --- values written into a line -----------------------------------------------------


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON (numpy scalars and arrays unwrapped), or a clear error."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)  # "inf" / "nan": JSON has no such numbers
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise SerializationError(
        f"{where} is a {type(value).__name__}, which a record cannot hold as JSON. Fix: pass "
        "numbers, strings, lists and dicts; put data under inputs=/outputs= to fingerprint it."
    )


def _privacy_value(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise SerializationError(
            f"{name} must be a number, got {value!r}. Fix: pass the {name} this run spent."
        )
    number = float(value)
    if math.isnan(number) or number < 0:
        raise SerializationError(
            f"{name} must be >= 0, got {number!r}. Fix: pass the {name} this run spent."
        )
    return number


@dataclass(frozen=True)
class RecordEntry:
    """One line of a record: its position, its SHA-256 (the next line's ``prev``), its content."""

    index: int
    hash: str
    content: dict[str, Any] = field(repr=False)


# --- appending ---------------------------------------------------------------------


def _read_last_line(handle: Any, size: int) -> bytes:
    """The file's last complete line (without its newline), or b"" for an empty file."""
    if size == 0:
        return b""
    handle.seek(size - 1)
    if handle.read(1) != b"\n":
        raise SerializationError(
            f"{handle.name}: the last line is incomplete (a write was cut off). Fix: run "
            "'pets verify-record' on it and keep it as evidence; start a new record file."
        )
    start, tail = size - 1, b""  # tail: the bytes [start, size - 1), before the final newline
    while start > 0:
        step = min(_CHUNK, start)
        start -= step
        handle.seek(start)
        tail = handle.read(step) + tail
        cut = tail.rfind(b"\n")
        if cut >= 0:
            return tail[cut + 1 :]
    return tail


class RunRecord:
    """An append-only, hash-chained JSON-lines record at ``path`` (see :func:`record`)."""

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None = None) -> None:
        if key is None:
            key = configured_key()
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise SerializationError(
                "key must be bytes of at least 16 bytes. Fix: pass e.g. key=os.urandom(32) "
                "and keep it apart from the record."
            )
        self.path = Path(path)
        self._key = key
        self.head: str | None = None

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        return None

    def __repr__(self) -> str:
        signed = ", HMAC-signed" if self._key is not None else ""
        return f"RunRecord({str(self.path)!r}{signed})"

    def log(
        self,
        kind: str,
        *,
        what: str = "",
        parameters: Mapping[str, Any] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        budget: Any = None,
        keys: Mapping[str, str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> RecordEntry:
        """Append one run and return its entry.

        ``kind`` is what sort of run it was (``"training"``, ``"inference"``,
        ``"release"``, ``"audit"``, ...); ``what`` says what ran; ``parameters``
        its settings (JSON values); ``epsilon`` / ``delta`` the privacy spent by
        this run; ``budget`` a :class:`pets.dp.Budget` whose limits and total
        spend are recorded too; ``keys`` which party held which keys
        (``{"client": "CKKS secret key", "server": "public and Galois keys"}``);
        ``inputs`` / ``outputs`` name data that is fingerprinted, never stored.
        Further keywords are stored as JSON.
        """
        if not isinstance(kind, str) or not kind:
            raise SerializationError(
                f"kind must be a non-empty string, got {kind!r}. Fix: pass e.g. "
                "kind='inference'."
            )
        content: dict[str, Any] = {
            "kind": kind,
            "what": _json_value(what, "what"),
            "parameters": _json_value(dict(parameters or {}), "parameters"),
            "privacy": {
                "epsilon": _privacy_value(epsilon, "epsilon"),
                "delta": _privacy_value(delta, "delta"),
            },
            "keys": _json_value(dict(keys or {}), "keys"),
            "inputs": {str(k): fingerprint(v) for k, v in (inputs or {}).items()},
            "outputs": {str(k): fingerprint(v) for k, v in (outputs or {}).items()},
        }
        if budget is not None:
            content["privacy"]["budget"] = _budget_summary(budget)
        for name, value in extra.items():
            if name in content or name in _FIELDS or name == "mac":
                raise SerializationError(
                    f"{name!r} is a field the record writes itself. Fix: pass it under "
                    "parameters= instead."
                )
            content[name] = _json_value(value, name)
        return self._append(content)

    def _append(self, content: dict[str, Any]) -> RecordEntry:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path.with_name(self.path.name + ".lock"),
                                 poll_interval=0.005)
        with lock, self.path.open("a+b") as handle:
            size = os.fstat(handle.fileno()).st_size
            last = _read_last_line(handle, size)
            index, prev = 0, GENESIS
            if last:
                try:
                    previous = json.loads(last)
                    index = int(previous["index"]) + 1
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    raise SerializationError(
                        f"{self.path}: the last line is not a record entry. Fix: run "
                        "'pets verify-record' on it; start a new record file."
                    ) from exc
                prev = _line_hash(last)
            line_content = {
                "version": VERSION,
                "index": index,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "prev": prev,
                **content,
            }
            if self._key is not None:
                line_content["mac"] = _mac(self._key, line_content)
            line = _canonical(line_content)
            os.write(handle.fileno(), line + b"\n")
            os.fsync(handle.fileno())
        entry = RecordEntry(index=index, hash=_line_hash(line), content=line_content)
        self.head = entry.hash
        logger.debug("recorded %s run #%d in %s", content["kind"], index, self.path)
        return entry


def _budget_summary(budget: Any) -> dict[str, Any]:
    try:
        spent = budget.spent
        return {
            "epsilon": float(budget.epsilon),
            "delta": float(budget.delta),
            "spent": [float(spent[0]), float(spent[1])],
            "composition": str(getattr(budget, "composition", "")),
        }
    except (AttributeError, TypeError, IndexError) as exc:
        raise SerializationError(
            f"budget must be a pets.dp.Budget, got {type(budget).__name__}. Fix: pass the "
            "Budget the run spent from, or epsilon=/delta= directly."
        ) from exc


def record(path: str | os.PathLike[str], *, key: bytes | None = None) -> RunRecord:
    """Open (or start) the hash-chained run record at ``path``.

    ``key`` (bytes, kept apart from the record) adds an HMAC-SHA256 to every
    line, so that only key holders can write lines that verify; without ``key``,
    the key in the file ``$PETS_RECORD_KEY_FILE`` names is used when that is set. Use as
    ``with pets.record(path) as rec: rec.log("inference", ...)``; each
    ``log`` appends and flushes at once.
    """
    return RunRecord(path, key=key)


# --- verifying ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordReport:
    """A record whose chain verified: how many entries, of which kinds, and its head hash."""

    path: str
    entries: int
    head: str
    kinds: dict[str, int]
    authenticated: bool
    epsilon_spent: float
    head_checked: bool = False

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "no runs"
        signed = "every line HMAC-verified" if self.authenticated else "not HMAC-signed"
        if self.head_checked:
            keep = "the head matches the one kept elsewhere"
        else:
            keep = (
                "keep this head and line count outside the record (a ticket, a signed note) "
                "and pass --head next time: without them"
                + ("" if self.authenticated else " or a key")
                + ", an edited last line or removed last lines cannot be detected"
            )
        return (
            f"{self.path}: chain intact, {self.entries} entries ({kinds}); {signed}; "
            f"epsilon recorded {self.epsilon_spent:g}; head {self.head} after "
            f"{self.entries} lines; {keep}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "entries": self.entries, "head": self.head,
            "kinds": dict(self.kinds), "authenticated": self.authenticated,
            "epsilon_spent": self.epsilon_spent, "lines": self.entries,
            "head_checked": self.head_checked,
        }


def _broken(path: Path, number: int, problem: str, fix: str | None = None) -> SerializationError:
    """The error for the first bad line, ``number`` counted from 1."""
    if fix is None:
        intact = {1: "", 2: " (line 1 verifies)"}.get(number, f" (lines 1-{number - 1} verify)")
        fix = f"restore the record from a trusted copy{intact}"
    return SerializationError(f"{path} line {number}: {problem}. Fix: {fix}")


def verify_record(
    path: str | os.PathLike[str], *, key: bytes | None = None, head: str | None = None
) -> RecordReport:
    """Check every line's chain link (and HMAC, given ``key``); raise at the first bad line.

    Raises :class:`pets.SerializationError` naming the first line that was
    edited, removed, reordered, inserted or cut off. Without ``head`` (a hash
    kept elsewhere) or ``key``, an edit of the last line or removed last lines
    leave a valid chain: the report gives the head and line count to keep. Without
    ``key``, the key file ``$PETS_RECORD_KEY_FILE`` names is used when it is set.

    >>> import os, tempfile, pets
    >>> path = os.path.join(tempfile.mkdtemp(), "runs.jsonl")
    >>> for run in range(3):
    ...     _ = pets.record(path).log("inference", what=f"batch {run}")
    >>> lines = open(path).readlines()
    >>> _ = open(path, "w").writelines(lines[:1] + lines[2:])   # remove line 2
    >>> pets.verify_record(path)
    Traceback (most recent call last):
    ...
    pets.errors.SerializationError: ... line 2: its index is 2, expected 1...
    """
    path = Path(path)
    if key is None:
        key = configured_key()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SerializationError(
            f"cannot read the record {path}: {exc.strerror}. Fix: pass the path of a record "
            "written by pets.record."
        ) from exc
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise _broken(path, len(lines), "the last line is incomplete (no newline: a write "
                      "was cut off or the file truncated)")
    lines.pop()
    prev, kinds, epsilon = GENESIS, Counter[str](), 0.0
    for number, line in enumerate(lines, start=1):
        try:
            content = json.loads(line)
        except (ValueError, RecursionError):
            raise _broken(path, number, "not valid JSON (or nested too deeply)") from None
        if not isinstance(content, dict) or any(f not in content for f in _FIELDS):
            raise _broken(path, number, f"not a record entry (needs {', '.join(_FIELDS)})")
        if content["version"] != VERSION:
            raise _broken(path, number, f"record version {content['version']!r}, this pets "
                          f"reads {VERSION}", "verify it with the pets that wrote it")
        if content["index"] != number - 1:
            raise _broken(path, number, f"its index is {content['index']}, expected "
                          f"{number - 1}: a line before it was removed or inserted")
        if content["prev"] != prev:
            if number == 1:
                raise _broken(path, 1, "its 'prev' is not the start of a chain: lines before "
                              "it were removed")
            raise _broken(path, number - 1, f"its hash does not match line {number}'s 'prev': "
                          f"it was edited, or line {number} was moved or inserted")
        if key is not None:
            mac = content.get("mac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, content)):
                raise _broken(path, number, "its HMAC does not verify under this key: the line "
                              "was edited or written without the key")
        prev = _line_hash(line)
        kinds[str(content["kind"])] += 1
        spent = content.get("privacy", {}).get("epsilon") if isinstance(
            content.get("privacy"), dict) else None
        if isinstance(spent, (int, float)):
            epsilon += float(spent)
    if head is not None and head != prev:
        raise _broken(path, max(len(lines), 1), f"the record ends at head {prev}, not the expected "
                      f"{head}: lines were removed from the end or added after it")
    logger.debug("verified %d entries in %s", len(lines), path)
    return RecordReport(
        path=str(path),
        entries=len(lines),
        head=prev,
        kinds=dict(kinds),
        authenticated=key is not None,
        epsilon_spent=epsilon,
        head_checked=head is not None,
    )
