"""Client-level DP for federated rounds: clip the update, add a share of the noise, pay for it.

Each round, every client clips its update (the change it proposes to the
global model) to L2 norm ``clip_norm`` and adds Gaussian noise of standard
deviation ``sigma * clip_norm / sqrt(noise_clients)``, where ``sigma`` is the
noise multiplier of a Gaussian mechanism giving ``(epsilon_per_round, delta)``.
The sum of any ``noise_clients`` such shares carries noise of standard deviation
``sigma * clip_norm``: the Gaussian mechanism on the sum of clipped updates,
whose sensitivity to adding or removing one client is ``clip_norm``. The model
the clients decrypt (the sum divided by the public count) is that sum,
post-processed, so each round costs ``(epsilon_per_round, delta)`` per client,
composed over rounds by Rényi-DP accounting in a :class:`pets.dp.Budget`.

This is *distributed* noise: no single party adds all of it, and the
aggregator, which could otherwise remove noise it added itself, adds none.
What a dropout does: a round with ``m >= noise_clients`` replies has at least
the promised noise (more when ``m > noise_clients``); a round with fewer is
refused by the strategy, since its sum would carry too little noise.

One update seen alone carries only its own share of noise: noise multiplier
``sigma / sqrt(noise_clients)`` on sensitivity ``clip_norm``. That is what an
aggregator sees in the clear without encryption, or with encryption once it
colludes with a key holder; :meth:`DPSettings.epsilon_of_one_update` states it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import pets
import pets.dp

__all__ = ["DPSettings", "epsilon_per_round_for"]

#: the budget limit used to *measure* a composition (never reached)
_MEASURING_LIMIT = 1e9


@dataclass(frozen=True)
class DPSettings:
    """What each client promises, and enforces, for its own data.

    ``noise_clients``: how many clients' noise shares make up the full noise;
    the strategy refuses to aggregate a round with fewer replies. ``budget_epsilon``
    and ``budget_delta`` bound the total over all rounds; a client whose next
    round would pass them refuses to train (``BudgetExceededError``).
    """

    clip_norm: float
    epsilon_per_round: float
    delta: float
    noise_clients: int
    budget_epsilon: float
    budget_delta: float

    def __post_init__(self) -> None:
        if not (isinstance(self.noise_clients, int) and self.noise_clients >= 1):
            raise pets.dp.DPConfigurationError(
                f"noise_clients must be an int >= 1, got {self.noise_clients!r}. Fix: pass "
                "the number of clients whose noise shares together must carry the full noise."
            )
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise pets.dp.DPConfigurationError(
                f"clip_norm must be a finite number > 0, got {self.clip_norm!r}. Fix: pass "
                "the largest L2 norm one client's update may have, e.g. 1.0."
            )
        if self.budget_delta < self.delta:
            raise pets.dp.DPConfigurationError(
                f"budget_delta={self.budget_delta!r} is smaller than the delta of one round "
                f"({self.delta!r}). Fix: pass a budget_delta >= delta."
            )
        self.round_mechanism()  # validates epsilon_per_round and delta

    @classmethod
    def for_budget(
        cls,
        epsilon: float,
        delta: float,
        *,
        rounds: int,
        clip_norm: float = 1.0,
        noise_clients: int,
    ) -> DPSettings:
        """Settings whose ``rounds`` rounds together spend ``(epsilon, delta)`` (RDP).

        >>> settings = DPSettings.for_budget(8.0, 1e-5, rounds=4, noise_clients=2)
        >>> round(settings.epsilon_per_round, 2) > 2.0   # RDP: more than 8 / 4 per round
        True
        """
        return cls(
            clip_norm=clip_norm,
            epsilon_per_round=epsilon_per_round_for(epsilon, delta, rounds),
            delta=delta,
            noise_clients=noise_clients,
            budget_epsilon=epsilon,
            budget_delta=delta,
        )

    # ---- the mechanisms -------------------------------------------------------------

    def round_mechanism(self) -> pets.dp.GaussianMechanism:
        """The Gaussian mechanism on the sum of updates: what one round costs."""
        return pets.dp.GaussianMechanism(self.epsilon_per_round, self.delta, self.clip_norm)

    def share_mechanism(self) -> pets.dp.GaussianMechanism:
        """One client's share: the same noise multiplier on ``clip_norm / sqrt(noise_clients)``,
        so ``noise_clients`` shares add up to the round's noise."""
        return pets.dp.GaussianMechanism(
            self.epsilon_per_round, self.delta, self.clip_norm / math.sqrt(self.noise_clients)
        )

    @property
    def noise_multiplier(self) -> float:
        """Noise standard deviation of the round's sum, per unit of ``clip_norm``."""
        return self.round_mechanism().scale / self.clip_norm

    @property
    def share_std(self) -> float:
        """Noise standard deviation each client adds to each parameter."""
        return self.share_mechanism().scale

    def new_budget(self) -> pets.dp.Budget:
        """An empty budget with these limits, composed by Rényi-DP accounting."""
        return pets.dp.Budget(self.budget_epsilon, self.budget_delta, composition="rdp")

    def budget_after(self, rounds: int) -> pets.dp.Budget:
        """The budget of a client that has paid for ``rounds`` rounds (replayed: the ledger
        is a function of the rounds, so a client keeps only their count between messages)."""
        budget = self.new_budget()
        for number in range(1, rounds + 1):
            budget.spend_mechanism(self.round_mechanism(), label=f"federated round {number}")
        return budget

    def pay_in_file(self, path: str | os.PathLike[str], label: str) -> pets.dp.Budget:
        """Pay one round in the budget kept in ``path`` (created with these limits if new), or
        raise ``BudgetExceededError`` with nothing recorded. The file outlives the process."""
        budget = pets.dp.Budget.open(path, epsilon=self.budget_epsilon, delta=self.budget_delta,
                                     composition="rdp")
        budget.spend_mechanism(self.round_mechanism(), label=label)
        return budget

    def epsilon_of_one_update(self, rounds: int) -> float:
        """Epsilon of ``rounds`` updates of one client seen one by one, each with only its own
        noise share: what an aggregator that reads updates in the clear learns (at ``delta``)."""
        if rounds <= 0:
            return 0.0
        measuring = pets.dp.Budget(_MEASURING_LIMIT, self.budget_delta, composition="rdp")
        entry = measuring.spend_gaussian(
            self.noise_multiplier / math.sqrt(self.noise_clients),
            delta=self.budget_delta,
            steps=rounds,
        )
        return float(entry.epsilon)

    # ---- one client's round -----------------------------------------------------------

    def privatize(self, update: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``update`` clipped to ``clip_norm`` plus this client's noise share (OpenDP sampler).

        The caller has already paid for the round in its budget.
        """
        vector = np.asarray(update, dtype=np.float64).ravel()
        clipped = pets.dp.clip_l2(vector[np.newaxis, :], self.clip_norm)[0]
        return clipped + self.share_mechanism().noise(vector.size)


def epsilon_per_round_for(epsilon: float, delta: float, rounds: int) -> float:
    """The per-round epsilon (Gaussian, at ``delta``) whose ``rounds`` rounds compose, under
    Rényi-DP accounting, to at most ``epsilon`` at ``delta``; found by bisection."""
    if not (isinstance(rounds, int) and rounds >= 1):
        raise pets.dp.DPConfigurationError(
            f"rounds must be an int >= 1, got {rounds!r}. Fix: pass the number of rounds."
        )

    def total(per_round: float) -> float:
        budget = pets.dp.Budget(_MEASURING_LIMIT, delta, composition="rdp")
        mechanism = pets.dp.GaussianMechanism(per_round, delta, 1.0)
        for _ in range(rounds):
            budget.spend_mechanism(mechanism)
        return budget.spent[0]

    low, high = epsilon * 1e-3, epsilon
    if total(high) <= epsilon:
        return high
    if total(low) > epsilon:
        raise pets.dp.DPConfigurationError(
            f"no per-round epsilon fits {rounds} rounds into epsilon={epsilon!r} at "
            f"delta={delta!r}. Fix: allow a larger epsilon or delta, or fewer rounds."
        )
    for _ in range(40):
        middle = math.sqrt(low * high)
        if total(middle) <= epsilon:
            low = middle
        else:
            high = middle
    return low
