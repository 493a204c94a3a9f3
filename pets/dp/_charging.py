"""Charging DP-SGD steps to a budget as they are taken, past the steps already paid for.

:func:`pets.dp.make_private` charges the planned training (``epochs`` times the
batches per epoch) before the first step. Training longer than planned is not
free: Opacus calls :class:`StepCharger` on every optimizer step, after the noise
is drawn and before the parameters change. Past the plan, each step is charged
as its own ledger entry (one more Poisson-sampled Gaussian step, whose epsilon
is what the run's accountant adds for it), and the step that would take the
budget past its limit raises :class:`~pets.errors.BudgetExceededError`
instead of updating the model.
"""

from __future__ import annotations

from typing import Any

from pets.dp._imports import require
from pets.dp.budget import Budget
from pets.dp.events import dp_sgd_event
from pets.errors import BudgetExceededError

__all__ = ["StepCharger"]


class StepCharger:
    """Counts DP-SGD steps and charges ``budget`` for each one past ``planned_steps``.

    ``charged_epsilon`` is what the plan already paid (at ``delta``); ``accountant``
    is the Opacus accountant's name (``"rdp"``, ``"prv"``, ``"gdp"``), so a step
    costs what the training's own accounting says it does.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        noise_multiplier: float,
        sample_rate: float,
        planned_steps: int,
        charged_epsilon: float,
        delta: float,
        accountant: str,
        label: str,
    ) -> None:
        self.budget = budget
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate
        self.planned_steps = planned_steps
        self.charged_epsilon = charged_epsilon
        self.delta = delta
        self.accountant = accountant
        self.label = label
        self.steps = 0
        self._history: list[tuple[float, float, int]] = []

    def attach(self, optimizer: Any) -> None:
        """Run before Opacus' own step hook (its accountant) on every step of ``optimizer``."""
        account = optimizer.step_hook

        def charge_then_account(dp_optimizer: Any) -> None:
            self(dp_optimizer)  # raises BudgetExceededError before the step is applied
            if account is not None:
                account(dp_optimizer)

        optimizer.attach_step_hook(charge_then_account)

    def __call__(self, optimizer: Any) -> None:
        """Charge the step ``optimizer`` is about to take, or raise ``BudgetExceededError``."""
        rate = self.sample_rate * int(getattr(optimizer, "accumulated_iterations", 1) or 1)
        step = self.steps + 1
        if step > self.planned_steps:
            epsilon = self._epsilon_with(rate)
            extra = max(0.0, epsilon - self.charged_epsilon)
            try:
                self.budget.spend_event(
                    dp_sgd_event(self.noise_multiplier, rate, 1), epsilon=extra, delta=0.0,
                    label=f"{self.label}: step {step}, past the {self.planned_steps} planned",
                )
            except BudgetExceededError as exc:
                raise BudgetExceededError(
                    f"DP-SGD step {step} was not taken: the budget paid for "
                    f"{self.planned_steps} planned step(s) and "
                    f"{step - 1 - self.planned_steps} more, and this one does not fit. The "
                    f"model keeps the parameters of step {step - 1}. {exc}"
                ) from exc
            self.charged_epsilon = max(self.charged_epsilon, epsilon)
        self._add(rate)
        self.steps = step

    def _add(self, rate: float) -> None:
        if self._history and self._history[-1][:2] == (self.noise_multiplier, rate):
            noise, _, count = self._history[-1]
            self._history[-1] = (noise, rate, count + 1)
        else:
            self._history.append((self.noise_multiplier, rate, 1))

    def _epsilon_with(self, rate: float) -> float:
        """Epsilon at ``delta`` of the steps taken so far plus one more at ``rate``."""
        accountants = require("opacus.accountants", purpose="DP-SGD accounting")
        accountant = accountants.create_accountant(mechanism=self.accountant)
        history = list(self._history)
        if history and history[-1][:2] == (self.noise_multiplier, rate):
            history[-1] = (self.noise_multiplier, rate, history[-1][2] + 1)
        else:
            history.append((self.noise_multiplier, rate, 1))
        accountant.history = history
        return float(accountant.get_epsilon(delta=self.delta))
