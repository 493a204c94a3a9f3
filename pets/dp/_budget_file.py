"""A budget file on disk: checksummed JSON, written atomically, locked across processes.

Every process that spends from one file takes an exclusive lock on a sibling
``<name>.lock`` file (the ``filelock`` package: an OS advisory lock), re-reads the
ledger, checks the spend against it and writes the new ledger before letting go;
so two processes cannot both spend the last of a budget. The lock file is never
deleted (deleting it would let two processes lock two different files).

Reading is strict: the file's size, JSON (no NaN or Infinity, bounded nesting),
format, version and SHA-256 of its content are checked before any value is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from pets.errors import BudgetFileError

__all__ = ["FORMAT", "VERSION", "canonical", "locked", "read_content", "write_document"]

FORMAT = "pets.dp.Budget"
VERSION = 1
MAX_FILE_BYTES = 256 * 2**20
"""Largest budget file read (a million ledger entries take about 150 MiB)."""
LOCK_TIMEOUT = 60.0
"""Seconds to wait for another process's spend before giving up."""

RESTORE_FIX = (
    "Fix: restore the file from a backup. Do not start a fresh budget for data "
    "that has already been released: that would forget what was spent."
)


def canonical(content: Any) -> str:
    """The exact text the checksum covers."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive cross-process lock of the budget file ``path``.

    Waits up to ``timeout`` seconds (default :data:`LOCK_TIMEOUT`) for another holder.
    """
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    lock = filelock.FileLock(_lock_path(path), timeout=timeout, mode=0o600, poll_interval=0.005)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise BudgetFileError(
            f"another process has held the lock on {path} for over {timeout:.0f} s. "
            "Fix: check for a stuck process spending from this budget; nothing "
            "was recorded."
        ) from None
    except OSError as exc:
        raise BudgetFileError(
            f"cannot create the lock file {_lock_path(path)}: {exc}. Fix: make the budget's "
            "directory writable by every process that spends from it."
        ) from exc
    try:
        yield
    finally:
        lock.release()


def write_document(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` and its checksum to ``path`` atomically: temporary file, fsync, rename.."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(canonical(content).encode()).hexdigest(),
        "content": content,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, sort_keys=True, allow_nan=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, ValueError) as exc:
        raise BudgetFileError(
            f"could not save the budget to {path}: {exc}. Fix: check the directory "
            "exists and is writable; the spend was not recorded."
        ) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a budget can hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} overflows a float")
    return value


def read_content(path: Path) -> dict[str, Any]:
    """The checksummed ``content`` object of the budget file at ``path``, or ``BudgetFileError``."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BudgetFileError(
                f"the budget file {path} is {size} bytes, more than the {MAX_FILE_BYTES} a "
                f"budget file can be; it is not a budget file or it is corrupt. {RESTORE_FIX}"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BudgetFileError(f"no budget file at {path}. {RESTORE_FIX}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetFileError(f"cannot read the budget file {path}: {exc}. {RESTORE_FIX}") from exc
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise BudgetFileError(
            f"the budget file {path} is not valid JSON (truncated or corrupt: {exc}). "
            f"{RESTORE_FIX}"
        ) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BudgetFileError(f"{path} is not a pets privacy budget file. {RESTORE_FIX}")
    if document.get("version") != VERSION:
        raise BudgetFileError(
            f"the budget file {path} has version {document.get('version')!r}; "
            f"this pets reads version {VERSION}. Fix: load it with the pets that wrote it."
        )
    content = document.get("content")
    try:
        digest = hashlib.sha256(canonical(content).encode()).hexdigest()
    except (TypeError, ValueError, RecursionError):
        digest = None
    if not isinstance(content, dict) or digest != document.get("sha256"):
        raise BudgetFileError(
            f"the checksum of the budget file {path} does not match its content: "
            f"it was edited or corrupted. {RESTORE_FIX}"
        )
    return content
