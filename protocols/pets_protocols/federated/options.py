"""The two kinds of DP a federation can promise, as :func:`~.api.train` takes them.

* :class:`SampleDP` protects **one record** of a client: every client runs DP-SGD
  (Opacus: per-example clipping, Gaussian noise, Poisson sampling) on its own data
  and pays for each round in its own :class:`pets.dp.Budget`, kept in a file.
  It works with a handful of clients: the noise is sized for a client's records,
  not for the number of clients.
* :class:`ClientDP` protects **a whole client**: each update is clipped to
  ``clip_norm`` and the clients add Gaussian noise shares that together make the
  noise of one Gaussian mechanism on the sum. Its noise on the average falls as
  ``1 / clients``: pick it for hundreds of clients (phones, hospitals' many
  wards), where one participant's presence is what must stay hidden.

>>> SampleDP(epsilon=4.0).delta, ClientDP(epsilon=8.0).clip_norm
(1e-05, 1.0)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pets
import pets.dp

__all__ = ["ClientDP", "SampleDP"]


def _check_budget(epsilon: float, delta: float) -> None:
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise pets.dp.DPConfigurationError(
            f"epsilon must be a finite number > 0, got {epsilon!r}. Fix: pass each client's "
            "total budget over all rounds, e.g. epsilon=4.0."
        )
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise pets.dp.DPConfigurationError(
            f"delta must be in (0, 1), got {delta!r}. Fix: pass e.g. delta=1e-5 (below one "
            "over the number of records)."
        )


def _check_bound(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise pets.dp.DPConfigurationError(
            f"{name} must be a finite number > 0, got {value!r}. Fix: pass e.g. {name}=1.0."
        )


@dataclass(frozen=True)
class SampleDP:
    """Record-level DP inside each client: DP-SGD through Opacus, ``(epsilon, delta)`` per
    client over all rounds.

    ``max_grad_norm``: the per-example gradient clip. ``budget_dir``: where each client's
    budget file lives (``client-<i>.json``); a later :func:`~.api.train` with the same
    folder continues those budgets, so a restarted client cannot spend twice. ``None``:
    a fresh temporary folder for this run only. ``poisson``: Poisson sampling of each
    step's batch (what the accounting assumes); ``False`` takes shuffled fixed-size
    batches instead, which the accountant then over-credits.
    """

    epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    budget_dir: str | os.PathLike[str] | None = None
    poisson: bool = True

    def __post_init__(self) -> None:
        _check_budget(self.epsilon, self.delta)
        _check_bound(self.max_grad_norm, "max_grad_norm")


@dataclass(frozen=True)
class ClientDP:
    """Client-level DP: each update clipped to ``clip_norm``, Gaussian noise in shares,
    ``(epsilon, delta)`` over all rounds for each client's participation.

    ``noise_clients``: how many clients' shares make the full noise (default: all but
    one, so a round survives one dropout); a round with fewer usable updates is not
    aggregated. ``budget_dir``: as for :class:`SampleDP`.
    """

    epsilon: float
    delta: float = 1e-5
    clip_norm: float = 1.0
    noise_clients: int | None = None
    budget_dir: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        _check_budget(self.epsilon, self.delta)
        _check_bound(self.clip_norm, "clip_norm")
        if self.noise_clients is not None and not (
            isinstance(self.noise_clients, int) and self.noise_clients >= 1
        ):
            raise pets.dp.DPConfigurationError(
                f"noise_clients must be an int >= 1, got {self.noise_clients!r}. Fix: pass "
                "how many clients' noise shares must add up to the full noise."
            )
