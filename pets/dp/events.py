"""Privacy events: a JSON description of each spend, turned into dp-accounting events.

The ledger of a :class:`pets.dp.Budget` stores events as plain dictionaries so
that a budget file is readable and portable; this module maps them onto
``dp_accounting`` event objects when an accountant composes them.

=====================  ============================================================
``type``               fields
=====================  ============================================================
``epsilon_delta``      ``epsilon``, ``delta`` (no accountant supports it: basic)
``laplace``            ``noise_multiplier`` (scale / L1 sensitivity)
``gaussian``           ``noise_multiplier`` (sigma / L2 sensitivity)
``discrete_laplace``   ``noise_parameter`` (1 / scale), ``sensitivity`` (int)
``zcdp``               ``rho``
``randomized_response````noise_parameter``, ``num_buckets``
``poisson_sampled``    ``sampling_probability``, ``event``
``self_composed``      ``count``, ``event``
=====================  ============================================================
"""

from __future__ import annotations

import math
from typing import Any

from pets.dp._imports import require
from pets.dp._validation import as_float
from pets.errors import DPConfigurationError

__all__ = ["MAX_COUNT", "Event", "check_event", "dp_accounting_event", "dp_sgd_event"]

Event = dict[str, Any]

MAX_COUNT = 10**9
"""Most repetitions one ``self_composed`` event may declare (DP-SGD takes ~1e4-1e6 steps)."""

_MAX_NESTING = 8
_MAX_BUCKETS = 2**31


def _positive(value: Any, name: str, *, upper: float = math.inf, closed: bool = False) -> None:
    number = as_float(value)
    ok = (
        isinstance(value, (int, float))
        and number is not None
        and math.isfinite(number)
        and (number >= 0 if closed else number > 0)
        and number <= upper
    )
    if not ok:
        interval = f"{'[' if closed else '('}0, {upper:g}]"
        raise DPConfigurationError(f"{name} must be a finite number in {interval}, got {value!r}")


def _integer(value: Any, name: str, lower: int, upper: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and lower <= value <= upper):
        raise DPConfigurationError(
            f"{name} must be an integer in [{lower}, {upper}], got {value!r}"
        )


def check_event(event: Any, *, depth: int = 0) -> Event:
    """Return ``event`` if it is a well-formed privacy event, else raise ``DPConfigurationError``.

    Every field is checked for type and range (and nesting is bounded) before an
    accountant sees it, so that a forged or corrupted ledger cannot crash or
    stall the accountant: e.g. a ``self_composed`` count is at most :data:`MAX_COUNT`.

    >>> from pets.dp.events import check_event
    >>> check_event({"type": "gaussian", "noise_multiplier": 1.1})["type"]
    'gaussian'
    """
    if not isinstance(event, dict):
        raise DPConfigurationError(f"a privacy event must be an object, got {event!r}")
    if depth > _MAX_NESTING:
        raise DPConfigurationError(f"privacy events nest more than {_MAX_NESTING} deep")
    kind = event.get("type")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise DPConfigurationError(
            f"unknown privacy event type {kind!r}. Fix: use one of {', '.join(_FIELDS)}."
        )
    if set(event) != {"type", *fields}:
        raise DPConfigurationError(
            f"a {kind} event has the fields {sorted(fields)}, got {sorted(set(event) - {'type'})}"
        )
    if kind == "epsilon_delta":
        _positive(event["epsilon"], "epsilon", closed=True)
        _positive(event["delta"], "delta", upper=1.0, closed=True)
    elif kind in ("laplace", "gaussian"):
        _positive(event["noise_multiplier"], "noise_multiplier")
    elif kind == "discrete_laplace":
        _positive(event["noise_parameter"], "noise_parameter")
        _integer(event["sensitivity"], "sensitivity", 1, 2**62)
    elif kind == "zcdp":
        _positive(event["rho"], "rho", closed=True)
    elif kind == "randomized_response":
        _positive(event["noise_parameter"], "noise_parameter", upper=1.0, closed=True)
        _integer(event["num_buckets"], "num_buckets", 2, _MAX_BUCKETS)
    elif kind == "poisson_sampled":
        _positive(event["sampling_probability"], "sampling_probability", upper=1.0, closed=True)
        check_event(event["event"], depth=depth + 1)
    else:  # self_composed
        _integer(event["count"], "count", 1, MAX_COUNT)
        check_event(event["event"], depth=depth + 1)
    return event


_FIELDS: dict[str, tuple[str, ...]] = {
    "epsilon_delta": ("epsilon", "delta"),
    "laplace": ("noise_multiplier",),
    "gaussian": ("noise_multiplier",),
    "discrete_laplace": ("noise_parameter", "sensitivity"),
    "zcdp": ("rho",),
    "randomized_response": ("noise_parameter", "num_buckets"),
    "poisson_sampled": ("sampling_probability", "event"),
    "self_composed": ("count", "event"),
}


def dp_sgd_event(noise_multiplier: float, sampling_rate: float, steps: int) -> Event:
    """``steps`` Poisson-subsampled Gaussian steps, as DP-SGD takes them."""
    return {
        "type": "self_composed",
        "count": int(steps),
        "event": {
            "type": "poisson_sampled",
            "sampling_probability": float(sampling_rate),
            "event": {"type": "gaussian", "noise_multiplier": float(noise_multiplier)},
        },
    }


def dp_accounting_event(event: Event) -> Any:
    """The ``dp_accounting.DpEvent`` for ``event`` (``UnsupportedDpEvent`` for epsilon_delta)."""
    dpa = require("dp_accounting", purpose="RDP/PLD privacy accounting")
    dp_event = require("dp_accounting.dp_event", purpose="RDP/PLD privacy accounting")
    kind = event.get("type")
    if kind == "epsilon_delta":
        return dpa.UnsupportedDpEvent()
    if kind == "laplace":
        return dpa.LaplaceDpEvent(float(event["noise_multiplier"]))
    if kind == "gaussian":
        return dpa.GaussianDpEvent(float(event["noise_multiplier"]))
    if kind == "discrete_laplace":
        return dp_event.DiscreteLaplaceDpEvent(
            float(event["noise_parameter"]), int(event["sensitivity"])
        )
    if kind == "zcdp":
        return dpa.ZCDpEvent(float(event["rho"]))
    if kind == "randomized_response":
        return dpa.RandomizedResponseDpEvent(
            float(event["noise_parameter"]), int(event["num_buckets"])
        )
    if kind == "poisson_sampled":
        return dpa.PoissonSampledDpEvent(
            float(event["sampling_probability"]), dp_accounting_event(event["event"])
        )
    if kind == "self_composed":
        return dpa.SelfComposedDpEvent(dp_accounting_event(event["event"]), int(event["count"]))
    raise DPConfigurationError(
        f"unknown privacy event type {kind!r}. Fix: use one of epsilon_delta, laplace, "
        "gaussian, discrete_laplace, zcdp, randomized_response, poisson_sampled, self_composed."
    )
