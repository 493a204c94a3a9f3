"""How spends add up: basic composition, or an accountant from dp-accounting.

A composition turns a ledger into the total ``(epsilon, delta)`` spent.
``basic`` sums epsilons and deltas. ``rdp`` (Rényi DP, ``RdpAccountant``) and
``prv`` (privacy-loss distributions, ``PLDAccountant``) compose the events the
accountant understands, read epsilon at the budget's delta (less the deltas of
the spends it does not understand, which are added by basic composition), and
never report more than basic composition would: both bounds are valid, the
smaller is used.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from pets.dp._imports import require
from pets.dp.events import Event, dp_accounting_event
from pets.errors import DPConfigurationError

__all__ = [
    "BasicComposition",
    "Composition",
    "PLDComposition",
    "RDPComposition",
    "make_composition",
    "register_composition",
    "registered_compositions",
]


class Spend(Protocol):
    """What a composition reads from a ledger entry."""

    @property
    def epsilon(self) -> float: ...

    @property
    def delta(self) -> float: ...

    @property
    def event(self) -> Event: ...


class Composition(ABC):
    """Adds up a sequence of spends into one ``(epsilon, delta)``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def total(self, spends: Sequence[Spend], delta_limit: float) -> tuple[float, float]:
        """The ``(epsilon, delta)`` spent by ``spends`` together."""


_REGISTRY: dict[str, type[Composition]] = {}
C = TypeVar("C", bound="type[Composition]")


def register_composition(name: str) -> Callable[[C], C]:
    """Class decorator: make a composition available to ``Budget(composition=name)``."""

    def decorate(cls: C) -> C:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_compositions() -> tuple[str, ...]:
    """The names ``Budget(composition=...)`` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def make_composition(name: str) -> Composition:
    """The composition registered as ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise DPConfigurationError(
            f"unknown composition {name!r}. Fix: use one of {', '.join(registered_compositions())}."
        ) from None


@register_composition("basic")
class BasicComposition(Composition):
    """Sums epsilons and deltas (Dwork et al. 2006): always valid, loose for many spends."""

    def total(self, spends: Sequence[Spend], delta_limit: float) -> tuple[float, float]:
        return math.fsum(s.epsilon for s in spends), math.fsum(s.delta for s in spends)


_ACCOUNTANT_FAILURES = (ValueError, ArithmeticError, MemoryError, RecursionError, TypeError)


class AccountantComposition(Composition):
    """Composes what a dp-accounting accountant supports; adds the rest by basic composition."""

    @abstractmethod
    def new_accountant(self) -> Any:
        """A fresh ``dp_accounting.PrivacyAccountant``."""

    def epsilon(self, events: Sequence[Any], delta: float) -> float:
        """Epsilon at ``delta`` of ``events`` (all supported); ``inf`` if the accountant fails.

        A failure (an accountant that runs out of memory or range on extreme
        events) falls back on the bounds that remain valid: basic composition.
        """
        try:
            accountant = self.new_accountant()
            for event in events:
                accountant.compose(event)
            return float(accountant.get_epsilon(delta))
        except _ACCOUNTANT_FAILURES:
            return math.inf

    def total(self, spends: Sequence[Spend], delta_limit: float) -> tuple[float, float]:
        basic = BasicComposition().total(spends, delta_limit)
        probe = self.new_accountant()
        events = [dp_accounting_event(s.event) for s in spends]
        supported = [e for e in events if probe.supports(e)]
        if not supported:
            return basic
        others = [s for s, e in zip(spends, events, strict=True) if not probe.supports(e)]
        delta_left = delta_limit - math.fsum(s.delta for s in others)
        epsilon = math.inf
        if delta_left > 0:
            epsilon = self.epsilon(supported, delta_left) + math.fsum(s.epsilon for s in others)
        if basic[1] <= delta_limit and basic[0] <= epsilon:
            return basic
        return epsilon, delta_limit


@register_composition("rdp")
class RDPComposition(AccountantComposition):
    """Rényi-DP accounting (Mironov 2017) via ``dp_accounting.rdp.RdpAccountant``."""

    def new_accountant(self) -> Any:
        return require("dp_accounting.rdp", purpose="RDP accounting").RdpAccountant()


#: PLD accounting is skipped (RDP used instead) when RDP already puts epsilon above this:
#: the PLD's memory grows with the privacy loss, and at such losses the budget is long gone.
PLD_MAX_EPSILON = 64.0
#: ... or, for events RDP cannot compose, when they repeat more than this many times in all.
PLD_MAX_REPETITIONS = 10**6


def _repetitions(event: Any) -> int:
    """How many times the innermost mechanism of a dp-accounting event is applied."""
    count = int(getattr(event, "count", 1))
    inner = getattr(event, "event", None)
    return count * (_repetitions(inner) if inner is not None else 1)


@register_composition("prv")
class PLDComposition(AccountantComposition):
    """Privacy-loss-distribution accounting via ``dp_accounting.pld.PLDAccountant`` (tightest).

    The PLD's size grows with the privacy loss it represents: a forged or absurd
    ledger (a Gaussian repeated 1e12 times) would need petabytes. So the cheap RDP
    bound is checked first, and PLD is used only where it can matter.
    """

    def new_accountant(self) -> Any:
        return require("dp_accounting.pld", purpose="PLD accounting").PLDAccountant()

    def epsilon(self, events: Sequence[Any], delta: float) -> float:
        rdp = RDPComposition()
        probe = rdp.new_accountant()
        if all(probe.supports(e) for e in events):
            bound = rdp.epsilon(events, delta)
            if bound > PLD_MAX_EPSILON:
                return bound
            return min(bound, super().epsilon(events, delta))
        if sum(_repetitions(e) for e in events) > PLD_MAX_REPETITIONS:
            return math.inf  # basic composition applies
        return super().epsilon(events, delta)
