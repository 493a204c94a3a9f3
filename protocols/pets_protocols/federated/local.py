"""One client's round of local training on a torch model: plain SGD, or DP-SGD through Opacus.

The model travels as named float arrays (its ``state_dict`` order). Under
:class:`~.options.SampleDP` each client first pays for the round in its own
:class:`pets.dp.Budget` file: the ledger records each round as a DP-SGD event (noise
multiplier, sampling rate, steps) and charges the rise of their Rényi-DP composition
(Opacus' RDP analysis, the accountant its training uses), so the ledger's sum is the
composed epsilon. It then trains with Opacus at the noise multiplier that makes all
planned rounds fit the budget. A round the budget cannot pay raises
``BudgetExceededError`` before any record is touched; the file outlives the client's
process.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import pets
import pets.dp
from pets.dp.events import dp_sgd_event

__all__ = [
    "Arrays",
    "LocalPlan",
    "budget_file",
    "check_private_model",
    "epsilon_of",
    "fit_locally",
    "get_arrays",
    "noise_multiplier_for",
    "predict",
    "set_arrays",
]

Arrays = dict[str, npt.NDArray[Any]]
"""A model's named arrays, in ``state_dict`` order."""

#: Opacus' notices that pets states in its docs instead (the RNG) or that do not apply
_OPACUS_NOTICES = (".*[Ss]ecure RNG turned off.*", ".*Optimal order is the.*",
                   ".*Full backward hook is firing.*", ".*Using a non-full backward hook.*")


@dataclass(frozen=True)
class LocalPlan:
    """What every client does each round (the same for all; the data differ)."""

    rounds: int
    local_epochs: int
    lr: float
    batch_size: int
    seed: int
    #: SampleDP settings (epsilon, delta, max_grad_norm, poisson) or None
    sample_dp: Any = None
    budget_dir: str | None = None


def budget_file(folder: str | os.PathLike[str], client: int) -> Path:
    """Client ``client``'s budget file in ``folder``."""
    return Path(folder) / f"client-{client}.json"


def get_arrays(model: Any) -> Arrays:
    """The model's ``state_dict`` as numpy arrays (float parameters keep their dtype)."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def set_arrays(model: Any, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """Load named arrays into ``model`` (cast to each entry's dtype)."""
    import torch

    state = model.state_dict()
    model.load_state_dict({name: torch.as_tensor(np.asarray(arrays[name]), dtype=value.dtype)
                           for name, value in state.items()})


def predict(model: Any, x: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Predicted classes and logits of ``model`` on ``x``."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32))
    return logits.argmax(dim=1).numpy(), logits.numpy()


_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


@lru_cache(maxsize=256)
def _rdp_of(sigma: float, rate: float, steps: int) -> tuple[float, ...]:
    from opacus.accountants.analysis import rdp

    return tuple(rdp.compute_rdp(q=rate, noise_multiplier=sigma, steps=steps,
                                 orders=list(_ORDERS)))


def _rdp(events: list[tuple[float, float, int]]) -> npt.NDArray[np.float64]:
    """Rényi-DP at :data:`_ORDERS` of DP-SGD runs ``(noise multiplier, sampling rate, steps)``."""
    total = np.zeros(len(_ORDERS))
    for sigma, rate, steps in events:
        total += np.asarray(_rdp_of(sigma, rate, steps))
    return total


def epsilon_of(events: list[tuple[float, float, int]], delta: float) -> float:
    """Epsilon at ``delta`` of DP-SGD runs composed (Opacus' Rényi-DP analysis).

    >>> round(epsilon_of([(1.0, 0.1, 100)], 1e-5), 2)
    2.68
    """
    from opacus.accountants.analysis import rdp

    if not events:
        return 0.0
    epsilon, _ = rdp.get_privacy_spent(orders=list(_ORDERS), rdp=_rdp(events), delta=delta)
    return float(epsilon)


@lru_cache(maxsize=64)
def noise_multiplier_for(epsilon: float, delta: float, sampling_rate: float, steps: int) -> float:
    """The smallest noise multiplier (to 0.5 %) whose ``steps`` Poisson-subsampled Gaussian
    steps compose to at most ``epsilon`` at ``delta``.

    >>> sigma = noise_multiplier_for(4.0, 1e-5, 0.25, 40)
    >>> 2.0 < sigma < 2.3
    True
    """
    def spent(sigma: float) -> float:
        return epsilon_of([(sigma, sampling_rate, steps)], delta)

    low, high = 0.3, 1.0
    while spent(high) > epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise pets.dp.DPConfigurationError(
                f"no noise level fits {steps} DP-SGD steps into epsilon={epsilon!r} at "
                f"delta={delta!r}. Fix: allow a larger epsilon, or fewer rounds or epochs."
            )
    if spent(low) <= epsilon:
        return low
    while high / low > 1.005:
        middle = math.sqrt(low * high)
        low, high = (low, middle) if spent(middle) <= epsilon else (middle, high)
    return high


def _recorded(budget: pets.dp.Budget) -> list[tuple[float, float, int]]:
    """The DP-SGD runs a budget file's ledger records (its ``self_composed`` events)."""
    runs = []
    for entry in budget.ledger:
        event = entry.event
        if event.get("type") != "self_composed":
            raise pets.dp.BudgetFileError(
                f"the budget file {budget.path} holds a spend that is not a DP-SGD run "
                f"({entry.label!r}); a federated client's budget file holds only its rounds. "
                "Fix: give SampleDP(budget_dir=...) a folder of its own."
            )
        sampled = event["event"]
        runs.append((float(sampled["event"]["noise_multiplier"]),
                     float(sampled["sampling_probability"]), int(event["count"])))
    return runs


def check_private_model(model: Any) -> None:
    """Raise ``DPConfigurationError`` listing every layer Opacus cannot train, with its fix."""
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        lines = "\n".join(f"  - {' '.join(str(problem).split())}" for problem in problems)
        raise pets.dp.DPConfigurationError(
            f"Opacus cannot train this model with sample-level DP; it found:\n{lines}\n"
            "Fix: model = pets.dp.fix_model(model) (Opacus' ModuleValidator.fix: BatchNorm -> "
            "GroupNorm, ...), or use dp=federated.ClientDP(...)."
        )


def _loader(x: npt.NDArray[Any], y: npt.NDArray[Any], batch_size: int, seed: int) -> Any:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=min(batch_size, len(y)), shuffle=True,
                      generator=generator)


def _pay(plan: LocalPlan, client: int, examples: int, server_round: int) -> tuple[float, float]:
    """Pay this round in the client's budget file; (noise multiplier, epsilon spent so far).

    The file's ledger holds every round paid, as DP-SGD events; the round costs the rise
    of their Rényi-DP composition (so the ledger's plain sum is the composed epsilon, at
    ``delta``, which only the first round charges). Refused, with nothing charged, when
    that would pass the budget.
    """
    dp = plan.sample_dp
    assert plan.budget_dir is not None
    per_epoch = max(1, math.ceil(examples / plan.batch_size))
    rate, steps = 1.0 / per_epoch, plan.local_epochs * per_epoch
    sigma = noise_multiplier_for(float(dp.epsilon), float(dp.delta), rate, steps * plan.rounds)
    budget = pets.dp.Budget.open(budget_file(plan.budget_dir, client), epsilon=dp.epsilon,
                                 delta=dp.delta)
    runs = _recorded(budget)
    after = epsilon_of([*runs, (sigma, rate, steps)], float(dp.delta))
    budget.spend_event(dp_sgd_event(sigma, rate, steps),
                       epsilon=max(0.0, after - budget.spent[0]),
                       delta=0.0 if runs else float(dp.delta),
                       label=f"federated round {server_round}: {steps} DP-SGD steps")
    return sigma, float(budget.spent[0])


def fit_locally(
    template: Any,
    arrays: Mapping[str, npt.NDArray[Any]],
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    plan: LocalPlan,
    *,
    client: int,
    server_round: int,
    proximal_mu: float = 0.0,
) -> tuple[Arrays, dict[str, float]]:
    """Train a copy of ``template`` holding ``arrays`` on ``(x, y)`` for the round.

    Returns the new arrays and metrics: ``train-loss``, ``num-examples`` and, under
    sample-level DP, ``epsilon`` (what this client has spent in all) and ``noise``.
    ``proximal_mu`` adds FedProx's ``mu / 2 * |w - w_global|^2``.
    """
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(plan.seed * 100_003 + server_round * 1009 + client)
    metrics: dict[str, float] = {"num-examples": float(len(y))}
    model = copy.deepcopy(template)
    set_arrays(model, arrays)
    model.train()
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=plan.lr)
    loader = _loader(x, y, plan.batch_size, plan.seed + 7919 * server_round + client)
    trained = model
    with warnings.catch_warnings():
        for notice in _OPACUS_NOTICES:
            warnings.filterwarnings("ignore", message=notice)
        if plan.sample_dp is not None:
            from opacus import PrivacyEngine

            sigma, spent = _pay(plan, client, len(y), server_round)
            metrics.update(epsilon=spent, noise=sigma)
            engine = PrivacyEngine(accountant="rdp", secure_mode=False)
            model, optimizer, loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
                max_grad_norm=float(plan.sample_dp.max_grad_norm),
                poisson_sampling=bool(plan.sample_dp.poisson),
            )
            trained = model._module
        losses = []
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(plan.local_epochs):
            for inputs, labels in loader:
                if len(labels) == 0:  # a Poisson batch can be empty: nothing to learn from
                    continue
                optimizer.zero_grad()
                loss = loss_fn(model(inputs), labels)
                if proximal_mu > 0:
                    loss = loss + proximal_mu / 2 * sum(
                        ((p - a) ** 2).sum() for p, a in zip(trained.parameters(), anchor,
                                                             strict=True))
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    metrics["train-loss"] = float(np.mean(losses)) if losses else math.nan
    return get_arrays(trained), metrics
