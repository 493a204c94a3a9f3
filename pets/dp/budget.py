"""A privacy budget: a ledger of spends that refuses the one that would exceed it.

The ledger is the record of what has been released about a dataset. Every
spend is checked and recorded under one lock, so threads cannot overspend
together. A budget kept in a file (``Budget.open(path, ...)``) is also safe
across processes: each spend locks the file, re-reads the ledger other
processes may have extended, checks against it and writes it back before
unlocking. The file is JSON with a SHA-256 checksum of its content, written
atomically; a file that was truncated, edited, rolled back under an open
handle or not a budget is refused with :class:`pets.errors.BudgetFileError`,
never silently replaced by a fresh budget. The checksum detects accidents and
casual edits, not a determined forger (it is not a MAC): keep budget files
where only the data curator can write.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pets.dp import _budget_file
from pets.dp._budget_file import RESTORE_FIX
from pets.dp._imports import require
from pets.dp._validation import as_float, check_delta, check_epsilon
from pets.dp.composition import make_composition
from pets.dp.events import MAX_COUNT, Event, check_event, dp_accounting_event, dp_sgd_event
from pets.dp.mechanisms.base import Mechanism
from pets.errors import BudgetExceededError, BudgetFileError, DPConfigurationError

__all__ = ["Budget", "LedgerEntry"]

MAX_LEDGER = 1_000_000
"""Most entries a budget file may hold (each spend composes them all)."""


_ID_CHARACTERS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz-")


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded spend: its own ``(epsilon, delta)``, a label, its privacy event, and a
    unique ``id`` (so two spends of the same size and label are still two spends)."""

    epsilon: float
    delta: float
    label: str | None = None
    event: Event = field(default_factory=dict)
    id: str = field(default_factory=_new_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "label": self.label,
            "event": self.event,
            "id": self.id,
        }

    @classmethod
    def from_json(cls, data: Any, position: int = 0) -> LedgerEntry:
        """Parse one saved entry, refusing anything :meth:`to_json` cannot have written.

        Files written before entries had ids get ``legacy-<position>``.
        """
        fields = {"epsilon", "delta", "label", "event"}
        if not isinstance(data, dict) or set(data) not in (fields, {*fields, "id"}):
            raise ValueError("a ledger entry is an object with epsilon, delta, label, event and id")
        epsilon, delta = as_float(data["epsilon"]), as_float(data["delta"])
        if epsilon is None or not (math.isfinite(epsilon) and epsilon >= 0):
            raise ValueError(f"a ledger entry's epsilon must be finite and >= 0, got {epsilon!r}")
        if delta is None or not (0 <= delta <= 1):
            raise ValueError(f"a ledger entry's delta must be in [0, 1], got {delta!r}")
        label = data["label"]
        if not (label is None or isinstance(label, str)):
            raise ValueError("a ledger entry's label must be a string or null")
        entry_id = data.get("id", f"legacy-{position}")
        if not (isinstance(entry_id, str) and 0 < len(entry_id) <= 64
                and set(entry_id) <= _ID_CHARACTERS):
            raise ValueError("a ledger entry's id must be 1 to 64 lowercase letters, digits or -")
        return cls(epsilon, delta, label, check_event(data["event"]), entry_id)


def _sum(entries: list[LedgerEntry]) -> tuple[float, float]:
    return sum(e.epsilon for e in entries), sum(e.delta for e in entries)


def _fmt(epsilon: float, delta: float) -> str:
    return f"(epsilon={epsilon:.6g}, delta={delta:.6g})"


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
        #: per file (resolved path): the ids of the spends it held when last read or written here
        self._known: dict[Path, frozenset[str]] = {}
        if self._path is not None:
            with _budget_file.locked(self._path):
                if self._path.exists():
                    raise BudgetFileError(
                        f"a budget file already exists at {self._path}; a new Budget would "
                        "replace its ledger. Fix: continue it with pets.dp.Budget.open(path, ...) "
                        "or Budget.load(path), or choose another path for another dataset."
                    )
                _budget_file.write_document(self._path, self._content())

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
        own = as_float(epsilon)
        if own is None or not (math.isfinite(own) and own >= 0):
            raise DPConfigurationError(
                f"epsilon must be a finite number >= 0, got {epsilon!r}. "
                "Fix: pass the epsilon of the release being paid for."
            )
        delta = check_delta(delta)
        event = {"type": "epsilon_delta", "epsilon": own, "delta": delta}
        return self.spend_event(event, epsilon=own, delta=delta, label=label)

    def spend_mechanism(self, mechanism: Mechanism, *, label: str | None = None) -> LedgerEntry:
        """Record one use of ``mechanism`` (its event lets rdp/prv compose it tightly).

        >>> import pets.dp
        >>> budget = pets.dp.Budget(epsilon=1.0)
        >>> _ = budget.spend_mechanism(pets.dp.LaplaceMechanism(epsilon=0.5, sensitivity=1.0))
        >>> budget.spent
        (0.5, 0.0)
        """
        if not isinstance(mechanism, Mechanism):
            raise DPConfigurationError(
                f"spend_mechanism needs a pets.dp mechanism, got {type(mechanism).__name__}. "
                "Fix: pass e.g. pets.dp.LaplaceMechanism(...), or use spend(epsilon, delta)."
            )
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
        if not (isinstance(steps, int) and 1 <= steps <= MAX_COUNT):
            raise DPConfigurationError(
                f"steps must be an int in [1, {MAX_COUNT}], got {steps!r}. "
                "Fix: pass the number of noisy steps actually taken."
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

        Nothing is recorded if the total would pass the limit. A budget kept in a
        file first takes the file's lock and catches up with the spends other
        processes recorded there, so the check covers them too.
        """
        try:
            if not isinstance(event, Mapping):
                raise DPConfigurationError(f"a privacy event must be a mapping, got {event!r}")
            event = check_event(dict(event))
        except DPConfigurationError as exc:
            raise DPConfigurationError(
                f"the privacy event of this spend is malformed: {exc}. Fix: describe it as "
                "pets.dp.events documents (e.g. use spend() or spend_mechanism())."
            ) from exc
        own_epsilon, own_delta = as_float(epsilon), as_float(delta)
        if own_epsilon is None or not (math.isfinite(own_epsilon) and own_epsilon >= 0):
            raise DPConfigurationError(
                f"epsilon must be a finite number >= 0, got {epsilon!r}. "
                "Fix: pass the epsilon of the release being paid for."
            )
        if own_delta is None or not 0 <= own_delta <= 1:
            raise DPConfigurationError(
                f"delta must be a number in [0, 1], got {delta!r}. "
                "Fix: pass the delta of the release being paid for."
            )
        if not (label is None or isinstance(label, str)):
            raise DPConfigurationError(
                f"label must be a string or None, got {type(label).__name__}. "
                "Fix: describe the release in words, e.g. label='mean age'."
            )
        entry = LedgerEntry(own_epsilon, own_delta, label, event)
        with self._lock:
            if self._path is None:
                return self._record(entry)
            with _budget_file.locked(self._path):
                self._catch_up()
                return self._record(entry)

    def _record(self, entry: LedgerEntry) -> LedgerEntry:
        """Check ``entry`` against the ledger, append it and save; the caller holds the locks."""
        candidate = [*self._entries, entry]
        total = self._composition.total(candidate, self._delta)
        if total[0] > self._epsilon or total[1] > self._delta:
            raise self._refusal(entry, total)
        previous = self._spent
        self._entries.append(entry)
        self._spent = total
        if self._path is not None:
            try:
                _budget_file.write_document(self._path, self._content())
            except BudgetFileError:
                self._entries.pop()
                self._spent = previous
                raise
        return entry

    def _refusal(self, entry: LedgerEntry, total: tuple[float, float]) -> BudgetExceededError:
        named = f" ({entry.label!r})" if entry.label else ""
        if total[1] > self._delta and total[0] <= self._epsilon:
            if self._delta == 0:
                fix = (
                    "Fix: this budget has delta=0 (pure epsilon-DP), which no spend with a "
                    "delta (Gaussian noise, DP-SGD) fits. Give the budget a delta, e.g. "
                    f"pets.dp.Budget(epsilon={self._epsilon:g}, delta=1e-5) (well below 1 / "
                    "the number of records), or use a pure-DP mechanism (Laplace)."
                )
            else:
                fix = (
                    "Fix: the delta limit is what runs out: spend less delta (a smaller delta "
                    "per release, fewer releases), use composition='rdp' or 'prv', which "
                    "charge many Gaussian spends far less, or stop releasing results about "
                    "this data."
                )
        else:
            fix = (
                "Fix: spend less (more noise, fewer or coarser releases), or stop releasing "
                "results about this data."
            )
        error = BudgetExceededError(
            f"spending {_fmt(entry.epsilon, entry.delta)}{named} would bring the total "
            f"to {_fmt(*total)} under {self.composition} composition, past the budget "
            f"of {_fmt(self._epsilon, self._delta)} (remaining: {_fmt(*self.remaining)}). "
            f"Nothing was recorded. {fix}"
        )
        error.requested = (entry.epsilon, entry.delta)  # type: ignore[attr-defined]
        error.remaining = self.remaining  # type: ignore[attr-defined]
        return error

    def _catch_up(self) -> None:
        """Adopt the file's ledger (other processes' spends); the caller holds the file lock."""
        assert self._path is not None
        if not self._path.exists():
            raise BudgetFileError(
                f"the budget file {self._path} was removed while this budget was using it. "
                f"{RESTORE_FIX}"
            )
        content = _budget_file.read_content(self._path)
        held = Budget._from_content(content, self._path, known=self._entries)
        if (held.epsilon, held.delta, held.composition) != (
            self._epsilon,
            self._delta,
            self.composition,
        ):
            raise BudgetFileError(
                f"the budget file {self._path} now holds other limits (epsilon, delta, "
                f"composition)={(held.epsilon, held.delta, held.composition)!r}; it was "
                f"replaced while this budget was using it. {RESTORE_FIX}"
            )
        if held._entries[: len(self._entries)] != self._entries:
            raise BudgetFileError(
                f"the budget file {self._path} no longer holds the {len(self._entries)} spends "
                "this budget recorded in it: it was rolled back or replaced while in use. "
                f"{RESTORE_FIX}"
            )
        if held._entries != self._entries:
            self._entries, self._spent = held._entries, held._spent

    def refresh(self) -> None:
        """Catch up with spends other processes recorded in this budget's file (if it has one).

        >>> import pets.dp, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "budget.json")
        >>> mine, theirs = (pets.dp.Budget.open(path, epsilon=1.0) for _ in range(2))
        >>> _ = theirs.spend(0.25)
        >>> mine.refresh()
        >>> mine.spent
        (0.25, 0.0)
        """
        if self._path is None:
            return
        with self._lock, _budget_file.locked(self._path):
            self._catch_up()

    # --- files -----------------------------------------------------------

    def _content(self) -> dict[str, Any]:
        return {
            "epsilon": self._epsilon,
            "delta": self._delta,
            "composition": self.composition,
            "ledger": [entry.to_json() for entry in self._entries],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the budget and its ledger to ``path`` as checksummed JSON, atomically.

        Saving never erases a spend recorded in the file. If the file's ledger grew
        since this budget read or saved it (another process spent from it), the two
        ledgers are merged, spend by spend (each entry has its own id), and the merged
        total is checked against the limit: :class:`~pets.errors.BudgetExceededError`
        if they do not fit together (nothing is written). A file that lost spends this
        budget saw in it (rolled back, replaced) or that holds another budget's limits
        is refused with :class:`~pets.errors.BudgetFileError`. After a save this budget
        holds the merged ledger.

        Save before releasing what a spend paid for: a refused save means the
        spend is not covered.
        """
        target = Path(path)
        with self._lock, _budget_file.locked(target):
            if self._path is not None and target.resolve() == self._path.resolve():
                self._catch_up()
            elif target.exists():
                self._merge_from(target)
            _budget_file.write_document(target, self._content())
            self._remember(target)

    def _remember(self, path: Path) -> None:
        self._known[path.resolve()] = frozenset(entry.id for entry in self._entries)

    def _merge_from(self, target: Path) -> None:
        """Adopt the spends saved in ``target`` that this budget lacks; the caller holds the
        file's lock. Refuses a file that went backwards or whose merged total passes the limit.
        """
        held = Budget._from_content(_budget_file.read_content(target), target)
        limits = (held.epsilon, held.delta, held.composition)
        if limits != (self._epsilon, self._delta, self.composition):
            raise BudgetFileError(
                f"{target} holds another budget (epsilon, delta, composition)={limits!r}; "
                "saving would replace its ledger. Fix: save to another path, or continue that "
                "budget with pets.dp.Budget.load(path) / Budget.open(path, ...)."
            )
        held_ids = {entry.id for entry in held._entries}
        lost = self._known.get(target.resolve(), frozenset()) - held_ids
        if lost:
            raise BudgetFileError(
                f"the budget file {target} no longer holds {len(lost)} spend(s) it held when "
                "this budget last read or saved it: it was rolled back or replaced. Nothing "
                f"was written. {RESTORE_FIX}"
            )
        mine = [entry for entry in self._entries if entry.id not in held_ids]
        merged = [*held._entries, *mine]
        total = self._composition.total(merged, self._delta)
        if total[0] > self._epsilon or total[1] > self._delta:
            error = BudgetExceededError(
                f"saving to {target} would bring its total to {_fmt(*total)} under "
                f"{self.composition} composition, past the budget of "
                f"{_fmt(self._epsilon, self._delta)}: other processes recorded "
                f"{_fmt(*held.spent)} in it since this budget read it, and this budget's "
                f"{len(mine)} new spend(s) do not fit beside theirs. Nothing was written: do not "
                "release what those spends paid for. Fix: spend from a budget shared through "
                "the file, pets.dp.Budget.open(path, ...), which checks every spend against "
                "the file as it happens, or load the file again before spending."
            )
            error.requested = _sum(mine)  # type: ignore[attr-defined]
            error.remaining = held.remaining  # type: ignore[attr-defined]
            raise error
        self._entries, self._spent = merged, total

    @classmethod
    def _from_content(
        cls, content: dict[str, Any], source: Path, *, known: list[LedgerEntry] | None = None
    ) -> Budget:
        """A budget from a checksummed file's ``content``, every field checked.

        If its ledger equals ``known`` (a handle's own, the common case), the total is
        not composed again: the caller already holds it.
        """
        try:
            if set(content) != {"epsilon", "delta", "composition", "ledger"}:
                raise ValueError(
                    "the content must hold exactly epsilon, delta, composition and ledger"
                )
            ledger = content["ledger"]
            if not isinstance(ledger, list) or len(ledger) > MAX_LEDGER:
                raise ValueError(f"the ledger must be a list of at most {MAX_LEDGER} entries")
            if not isinstance(content["composition"], str):
                raise ValueError("the composition must be a name")
            budget = cls(content["epsilon"], content["delta"], composition=content["composition"])
            budget._entries = [LedgerEntry.from_json(item, n) for n, item in enumerate(ledger)]
            if len({entry.id for entry in budget._entries}) != len(budget._entries):
                raise ValueError("two ledger entries share one id (a spend copied, not made)")
            if known is not None and budget._entries == known:
                return budget
            budget._spent = budget._composition.total(budget._entries, budget._delta)
        except (KeyError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise BudgetFileError(
                f"the budget file {source} is malformed: {exc}. {RESTORE_FIX}"
            ) from exc
        if budget._spent[0] > budget._epsilon or budget._spent[1] > budget._delta:
            raise BudgetFileError(
                f"the budget file {source} records {_fmt(*budget._spent)}, more than its limit "
                f"{_fmt(budget._epsilon, budget._delta)}. {RESTORE_FIX}"
            )
        return budget

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Budget:
        """Read a budget saved with :meth:`save`, ledger and all (not bound to the file:
        its spends are checked against the file again only when it is saved there).

        Raises ``BudgetFileError`` if the file is missing, truncated, edited, not a
        budget, or holds values no budget can (negative or non-finite spends,
        malformed privacy events, absurd repetition counts).

        >>> import pets.dp, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "budget.json")
        >>> budget = pets.dp.Budget(epsilon=2.0, delta=1e-6)
        >>> _ = budget.spend(0.5, label="histogram")
        >>> budget.save(path)
        >>> pets.dp.Budget.load(path).ledger == budget.ledger
        True
        """
        source = Path(path)
        budget = cls._from_content(_budget_file.read_content(source), source)
        budget._remember(source)
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
        asked = (check_epsilon(epsilon), check_delta(delta), make_composition(composition).name)
        with _budget_file.locked(target):
            if not target.exists():
                budget = cls(epsilon, delta, composition=composition)
                _budget_file.write_document(target, budget._content())
            else:
                budget = cls.load(target)
                held = (budget.epsilon, budget.delta, budget.composition)
                if asked != held:
                    raise BudgetFileError(
                        f"the budget file {target} holds limits (epsilon, delta, composition)="
                        f"{held!r}, but {asked!r} was asked. Fix: pass the limits it was "
                        "created with, or use another file for another dataset."
                    )
        budget._path = target
        return budget
