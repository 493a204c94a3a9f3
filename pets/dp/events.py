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

from typing import Any

from pets.dp._imports import require
from pets.errors import DPConfigurationError

__all__ = ["Event", "dp_accounting_event", "dp_sgd_event"]

Event = dict[str, Any]


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
