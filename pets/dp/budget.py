"""A privacy budget: a ledger of spends that refuses the one that would exceed it.

The ledger is the record of what has been released about a dataset. Every
spend is checked and recorded under one lock, so threads cannot overspend
together. A budget saves to JSON with a SHA-256 checksum of its content,
written atomically; a file that was truncated or edited is refused with
:class:`pets.errors.BudgetFileError`, never silently replaced by a fresh budget.
The checksum detects accidents and casual edits, not a determined forger: keep
budget files where only the data curator can write.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pets.dp._imports import require
from pets.dp._validation import check_delta, check_epsilon
from pets.dp.composition import make_composition
from pets.dp.events import Event, dp_accounting_event, dp_sgd_event
from pets.dp.mechanisms.base import Mechanism
from pets.errors import BudgetExceededError, BudgetFileError, DPConfigurationError

__all__ = ["Budget", "LedgerEntry"]

_FORMAT = "pets.dp.Budget"
_VERSION = 1


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded spend: its own ``(epsilon, delta)``, a label, and its privacy event."""

    epsilon: float
    delta: float
    label: str | None = None
    event: Event = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "label": self.label,
            "event": self.event,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerEntry:
        epsilon, delta, label, event = (data[k] for k in ("epsilon", "delta", "label", "event"))
        if not (isinstance(epsilon, (int, float)) and isinstance(delta, (int, float))):
            raise TypeError("epsilon and delta must be numbers")
        if not (label is None or isinstance(label, str)) or not isinstance(event, dict):
            raise TypeError("label must be a string or null and event an object")
        return cls(float(epsilon), float(delta), label, event)


def _fmt(epsilon: float, delta: float) -> str:
    return f"(epsilon={epsilon:.6g}, delta={delta:.6g})"


def _canonical(content: Mapping[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


class Budget:
    """An ``(epsilon, delta)`` privacy budget with a ledger, enforced on every spend.

    ``composition`` says how spends add up: ``"basic"`` (sum), ``"rdp"`` or
    ``"prv"`` (dp-accounting's Rényi-DP or privacy-loss-distribution
    accountants, which charge much less for many Gaussian or subsampled spends).
    With ``path``, the budget is saved after every spend.

    >>> import pets.dp
    >>> budget = pets.dp.Budget(epsilon=1.0)
    >>> _ = budget.spend(0.25, label="mean age")
    >>> budget.spent, budget.remaining
    ((0.25, 0.0), (0.75, 0.0))
    >>> budget.spend(0.9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pets.errors.BudgetExceededError: spending (epsilon=0.9, delta=0) would bring ...
    """

    def __init__(
        self,
        epsilon: float,
        delta: float = 0.0,
        *,
        composition: str = "basic",
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._epsilon = check_epsilon(epsilon)
        self._delta = check_delta(delta)
        self._composition = make_composition(composition)
        self._entries: list[LedgerEntry] = []
        self._spent = (0.0, 0.0)
        self._lock = threading.RLock()
        self._path = Path(path) if path is not None else None
        if self._path is not None:
            if self._path.exists():
                raise BudgetFileError(
                    f"a budget file already exists at {self._path}; a new Budget would replace "
                    "its ledger. Fix: continue it with pets.dp.Budget.open(path, ...) or "
                    "Budget.load(path), or choose another path for another dataset."
                )
            self.save(self._path)

    # --- reading ---------------------------------------------------------

    @property
    def epsilon(self) -> float:
        """The epsilon limit."""
        return self._epsilon

    @property
    def delta(self) -> float:
        """The delta limit."""
        return self._delta

    @property
    def composition(self) -> str:
        """The name of the composition rule."""
        return self._composition.name

    @property
    def path(self) -> Path | None:
        """The file saved after every spend, if any."""
        return self._path

    @property
    def spent(self) -> tuple[float, float]:
        """``(epsilon, delta)`` spent so far. Under rdp/prv, epsilon at the full delta limit."""
        with self._lock:
            return self._spent

    @property
    def remaining(self) -> tuple[float, float]:
        """``(epsilon, delta)`` left before the limit (headroom, not additive under rdp/prv)."""
        with self._lock:
            return (
                max(0.0, self._epsilon - self._spent[0]),
                max(0.0, self._delta - self._spent[1]),
            )

    @property
    def ledger(self) -> tuple[LedgerEntry, ...]:
        """Every spend, oldest first."""
        with self._lock:
            return tuple(self._entries)

    def __repr__(self) -> str:
        return (
            f"Budget(epsilon={self._epsilon!r}, delta={self._delta!r}, "
            f"composition={self.composition!r}, spent={self.spent!r}, entries={len(self._entries)})"
        )

    # --- spending --------------------------------------------------------

    def spend(self, epsilon: float, delta: float = 0.0, *, label: str | None = None) -> LedgerEntry:
        """Record a spend of ``(epsilon, delta)``, or raise ``BudgetExceededError``.

        >>> import pets.dp
        >>> pets.dp.Budget(epsilon=1.0).spend(0.5, label="count").epsilon
        0.5
        """
        if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
            raise DPConfigurationError(
                f"epsilon must be a finite number >= 0, got {epsilon!r}. "
                "Fix: pass the epsilon of the release being paid for."
            )
        delta = check_delta(delta)
        event = {"type": "epsilon_delta", "epsilon": float(epsilon), "delta": delta}
        return self.spend_event(event, epsilon=float(epsilon), delta=delta, label=label)

    def spend_mechanism(self, mechanism: Mechanism, *, label: str | None = None) -> LedgerEntry:
        """Record one use of ``mechanism`` (its event lets rdp/prv compose it tightly).

        >>> import pets.dp
        >>> budget = pets.dp.Budget(epsilon=1.0)
        >>> _ = budget.spend_mechanism(pets.dp.LaplaceMechanism(epsilon=0.5, sensitivity=1.0))
        >>> budget.spent
        (0.5, 0.0)
        """
        return self.spend_event(
            mechanism.dp_event(),
            epsilon=mechanism.epsilon,
            delta=mechanism.delta,
            label=label or type(mechanism).__name__,
        )

    def spend_gaussian(
        self,
        noise_multiplier: float,
        *,
        delta: float,
        steps: int = 1,
        sampling_rate: float = 1.0,
        label: str | None = None,
    ) -> LedgerEntry:
        """Record ``steps`` Gaussian releases (noise sigma / L2 sensitivity = ``noise_multiplier``),
        each on a Poisson sample of rate ``sampling_rate``; its own epsilon is read at ``delta``.

        >>> import pets.dp
        >>> budget = pets.dp.Budget(epsilon=10.0, delta=1e-5, composition="rdp")
        >>> entry = budget.spend_gaussian(1.0, delta=1e-5, steps=100, sampling_rate=0.01)
        >>> entry.epsilon < 2
        True
        """
        if not (isinstance(steps, int) and steps >= 1):
            raise DPConfigurationError(
                f"steps must be an int >= 1, got {steps!r}. Fix: pass steps=1 or more."
            )
        if not (isinstance(sampling_rate, (int, float)) and 0 < sampling_rate <= 1):
            raise DPConfigurationError(
                f"sampling_rate must be in (0, 1], got {sampling_rate!r}. "
                "Fix: pass batch size / dataset size."
            )
        noise = check_epsilon(noise_multiplier, name="noise_multiplier")
        delta = check_delta(delta, allow_zero=False)
        event = dp_sgd_event(noise, float(sampling_rate), steps)
        accountant = require("dp_accounting.rdp", purpose="RDP accounting").RdpAccountant()
        accountant.compose(dp_accounting_event(event))
        epsilon = float(accountant.get_epsilon(delta))
        return self.spend_event(event, epsilon=epsilon, delta=delta, label=label)

    def spend_event(
        self, event: Event, *, epsilon: float, delta: float, label: str | None = None
    ) -> LedgerEntry:
        """Record a spend described by a privacy ``event`` whose own cost is ``(epsilon, delta)``.

        Nothing is recorded if the total would pass the limit.
        """
        entry = LedgerEntry(float(epsilon), float(delta), label, dict(event))
        with self._lock:
            candidate = [*self._entries, entry]
            total = self._composition.total(candidate, self._delta)
            if total[0] > self._epsilon or total[1] > self._delta:
                named = f" ({label!r})" if label else ""
                error = BudgetExceededError(
                    f"spending {_fmt(entry.epsilon, entry.delta)}{named} would bring the total "
                    f"to {_fmt(*total)} under {self.composition} composition, past the budget "
                    f"of {_fmt(self._epsilon, self._delta)} (remaining: {_fmt(*self.remaining)}). "
                    "Nothing was recorded. Fix: spend less (more noise, fewer or coarser "
                    "releases), or stop releasing results about this data."
                )
                error.requested = (entry.epsilon, entry.delta)  # type: ignore[attr-defined]
                error.remaining = self.remaining  # type: ignore[attr-defined]
                raise error
            previous = self._spent
            self._entries.append(entry)
            self._spent = total
            if self._path is not None:
                try:
                    self.save(self._path)
                except BudgetFileError:
                    self._entries.pop()
                    self._spent = previous
                    raise
            return entry

    # --- files -----------------------------------------------------------

    def _content(self) -> dict[str, Any]:
        return {
            "epsilon": self._epsilon,
            "delta": self._delta,
            "composition": self.composition,
            "ledger": [entry.to_json() for entry in self._entries],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the budget and its ledger to ``path`` as checksummed JSON, atomically."""
        target = Path(path)
        with self._lock:
            content = self._content()
            document = {
                "format": _FORMAT,
                "version": _VERSION,
                "sha256": hashlib.sha256(_canonical(content).encode()).hexdigest(),
                "content": content,
            }
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
                )
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        json.dump(document, handle, indent=2, sort_keys=True, allow_nan=False)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise BudgetFileError(
                    f"could not save the budget to {target}: {exc}. Fix: check the directory "
                    "exists and is writable; the spend was not recorded."
                ) from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Budget:
        """Read a budget saved with :meth:`save`, ledger and all.

        Raises ``BudgetFileError`` if the file is missing, truncated, edited or not a budget.

        >>> import pets.dp, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "budget.json")
        >>> budget = pets.dp.Budget(epsilon=2.0, delta=1e-6)
        >>> _ = budget.spend(0.5, label="histogram")
        >>> budget.save(path)
        >>> pets.dp.Budget.load(path).ledger == budget.ledger
        True
        """
        source = Path(path)
        fix = (
            "Fix: restore the file from a backup. Do not start a fresh budget for data "
            "that has already been released: that would forget what was spent."
        )
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise BudgetFileError(f"no budget file at {source}. {fix}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise BudgetFileError(f"cannot read the budget file {source}: {exc}. {fix}") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BudgetFileError(
                f"the budget file {source} is not valid JSON (truncated or corrupt: {exc}). {fix}"
            ) from exc
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise BudgetFileError(f"{source} is not a pets privacy budget file. {fix}")
        if document.get("version") != _VERSION:
            raise BudgetFileError(
                f"the budget file {source} has version {document.get('version')!r}; "
                f"this pets reads version {_VERSION}. Fix: load it with the pets that wrote it."
            )
        content = document.get("content")
        digest = (
            hashlib.sha256(_canonical(content).encode()).hexdigest()
            if isinstance(content, dict)
            else None
        )
        if digest is None or digest != document.get("sha256"):
            raise BudgetFileError(
                f"the checksum of the budget file {source} does not match its content: "
                f"it was edited or corrupted. {fix}"
            )
        try:
            assert isinstance(content, dict)
            budget = cls(content["epsilon"], content["delta"], composition=content["composition"])
            budget._entries = [LedgerEntry.from_json(item) for item in content["ledger"]]
            budget._spent = budget._composition.total(budget._entries, budget._delta)
        except (KeyError, TypeError, ValueError) as exc:
            raise BudgetFileError(f"the budget file {source} is malformed: {exc!r}. {fix}") from exc
        if budget._spent[0] > budget._epsilon or budget._spent[1] > budget._delta:
            raise BudgetFileError(
                f"the budget file {source} records {_fmt(*budget._spent)}, more than its limit "
                f"{_fmt(budget._epsilon, budget._delta)}. {fix}"
            )
        return budget

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        epsilon: float,
        delta: float = 0.0,
        composition: str = "basic",
    ) -> Budget:
        """The budget kept in ``path``: loaded if it exists, else created; saved after every spend.

        >>> import pets.dp, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "budget.json")
        >>> _ = pets.dp.Budget.open(path, epsilon=1.0).spend(0.25)
        >>> pets.dp.Budget.open(path, epsilon=1.0).spent
        (0.25, 0.0)
        """
        target = Path(path)
        if not target.exists():
            return cls(epsilon, delta, composition=composition, path=target)
        budget = cls.load(target)
        asked = (check_epsilon(epsilon), check_delta(delta), composition)
        held = (budget.epsilon, budget.delta, budget.composition)
        if asked != held:
            raise BudgetFileError(
                f"the budget file {target} holds limits (epsilon, delta, composition)={held!r}, "
                f"but {asked!r} was asked. Fix: pass the limits it was created with, or use "
                "another file for another dataset."
            )
        budget._path = target
        return budget
