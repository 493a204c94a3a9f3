"""DP-SGD through Opacus: per-example clipping and Gaussian noise on every step.

``make_private`` validates the model first (reporting every layer DP-SGD
cannot train, with the fix), asks Opacus for the noise multiplier that reaches
``target_epsilon`` after ``epochs``, and returns the wrapped module, optimizer
and data loader. *Algorithm perturbation*: the noise is in the training, so
everything the model later outputs is covered by the same guarantee.

Opacus can draw its noise from a cryptographically secure generator only with
``torchcsprng`` (``secure_mode=True``), which is not available for current
torch releases; without it the noise comes from torch's Mersenne-Twister /
Philox generators, and :class:`InsecureRNGWarning` says so. torch's "Full backward
hook is firing" warning, which Opacus' hooks trigger on every backward pass and which is
harmless for them, is silenced (that message only).
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pets.dp._charging import StepCharger
from pets.dp._imports import require
from pets.dp._validation import check_delta, check_epsilon, check_positive
from pets.dp.budget import Budget, LedgerEntry
from pets.dp.events import dp_sgd_event
from pets.errors import DPConfigurationError, ModelIssue

if TYPE_CHECKING:
    import torch

__all__ = ["InsecureRNGWarning", "PrivateTraining", "fix_model", "make_private"]


_OPACUS_NOISE = (
    ".*[Ss]ecure RNG turned off.*",  # replaced by InsecureRNGWarning
    ".*Optimal order is the (largest|smallest) alpha.*",
)

HARMLESS_HOOK_WARNING = (
    "Full backward hook is firing when gradients are computed with respect to module outputs "
    "since no inputs require gradients"
)
"""torch's warning for a module whose inputs need no gradient, e.g. the first layer of any
model trained with DP-SGD. Opacus' per-sample-gradient hooks read only the gradients of
the outputs, so it is harmless there (Opacus issue #328); it fires on every backward pass."""


def silence_harmless_warnings() -> None:
    """Ignore :data:`HARMLESS_HOOK_WARNING` (that message and category only; idempotent).

    Installed by :func:`make_private`, since the warning fires during the caller's
    ``loss.backward()``, long after ``make_private`` returns. Every other warning,
    :class:`InsecureRNGWarning` included, still shows.
    """
    warnings.filterwarnings("ignore", message=HARMLESS_HOOK_WARNING, category=UserWarning)


def _unpredictable_generator() -> torch.Generator:
    """A torch generator seeded from the OS CSPRNG, independent of ``torch.manual_seed``."""
    torch_module = require("torch", purpose="DP-SGD")
    generator: torch.Generator = torch_module.Generator()
    generator.manual_seed(secrets.randbits(63))
    return generator


class InsecureRNGWarning(UserWarning):
    """DP-SGD noise is drawn from torch's non-cryptographic random number generator."""


@dataclass
class PrivateTraining:
    """What :func:`make_private` returns: train with ``module``, ``optimizer``, ``data_loader``."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: torch.utils.data.DataLoader[Any]
    engine: Any
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    target_epsilon: float
    target_delta: float
    epochs: int
    ledger_entry: LedgerEntry | None = None

    @property
    def accountant(self) -> Any:
        """The Opacus accountant tracking the steps actually taken."""
        return self.engine.accountant

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent by the steps taken so far, at ``delta`` (default: ``target_delta``).

        After no step nothing is spent: ``training.epsilon() == 0.0``; after
        training for the planned epochs it is at most ``target_epsilon``.
        """
        delta = self.target_delta if delta is None else check_delta(delta, allow_zero=False)
        if len(self.engine.accountant) == 0:
            return 0.0
        return float(self.engine.get_epsilon(delta))


def _model_issues(module: torch.nn.Module) -> list[ModelIssue]:
    """Every problem Opacus finds, each named by the layer it is in."""
    validators = require("opacus.validators", purpose="DP-SGD model validation")
    module_utils = require("opacus.utils.module_utils", purpose="DP-SGD model validation")
    validator = validators.ModuleValidator
    if not validator.validate(module, strict=False):
        return []
    fix = (
        "call pets.dp.fix_model(module) (opacus ModuleValidator.fix) to swap it, "
        "then build the optimizer over the fixed module's parameters."
    )
    issues = []
    if not module.training:
        issues.append(
            ModelIssue("model", "the model is in eval mode.", "call module.train() first.")
        )
    for name, sub_module in module_utils.trainable_modules(module):
        check = validator.VALIDATORS.get(type(sub_module))
        for error in check(sub_module) if check else []:
            where = f"{name or 'model'} ({type(sub_module).__name__})"
            issues.append(ModelIssue(where, " ".join(str(error).split()), fix))
    return issues


def fix_model(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with layers DP-SGD cannot train replaced (BatchNorm -> GroupNorm, ...).

    >>> import torch, pets.dp
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    >>> fixed = pets.dp.fix_model(model)
    >>> type(fixed[1]).__name__
    'GroupNorm'
    """
    validators = require("opacus.validators", purpose="DP-SGD model fixing")
    fixed: torch.nn.Module = validators.ModuleValidator.fix(module)
    return fixed


def make_private(
    *,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: torch.utils.data.DataLoader[Any],
    target_epsilon: float,
    target_delta: float,
    epochs: int,
    max_grad_norm: float,
    accountant: str = "prv",
    poisson_sampling: bool = True,
    budget: Budget | None = None,
    label: str | None = None,
) -> PrivateTraining:
    """Wrap a model, optimizer and data loader for DP-SGD reaching ``target_epsilon`` in ``epochs``.

    With ``budget``, the whole planned training is charged before it starts
    (nothing is wrapped if the budget would be exceeded), and every step past the
    plan is charged as it is taken: the step that would exceed the budget raises
    :class:`~pets.errors.BudgetExceededError` and leaves the model as it was.

    >>> import warnings, torch, pets.dp
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Linear(3, 2)
    >>> data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     training = pets.dp.make_private(
    ...         module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    ...         data_loader=DataLoader(data, batch_size=16), target_epsilon=2.0,
    ...         target_delta=1e-5, epochs=2, max_grad_norm=1.0, accountant="rdp")
    >>> training.noise_multiplier > 0, training.epsilon()
    (True, 0.0)
    """
    opacus = require("opacus", purpose="DP-SGD")
    target_epsilon = check_epsilon(target_epsilon, name="target_epsilon")
    target_delta = check_delta(target_delta, name="target_delta", allow_zero=False)
    max_grad_norm = check_positive(
        max_grad_norm, name="max_grad_norm", fix="pass the per-example gradient L2 bound, e.g. 1.0."
    )
    if not (isinstance(epochs, int) and epochs >= 1):
        raise DPConfigurationError(
            f"epochs must be an int >= 1, got {epochs!r}. Fix: pass epochs=1 or more."
        )
    known = sorted(opacus.accountants.registry._ACCOUNTANTS)
    if accountant not in known:
        raise DPConfigurationError(
            f"unknown accountant {accountant!r}. Fix: use one of {', '.join(known)}."
        )
    issues = _model_issues(module)
    if issues:
        lines = "\n".join(f"  - {issue}" for issue in issues)
        error = DPConfigurationError(
            f"the model has {len(issues)} part(s) DP-SGD cannot train:\n{lines}"
        )
        error.issues = issues  # type: ignore[attr-defined]
        raise error

    warnings.warn(
        "DP-SGD noise comes from torch's non-cryptographic PRNG: Opacus secure_mode needs "
        "torchcsprng, which is unavailable. pets seeds the noise and sampling generators "
        "from the OS CSPRNG (so torch.manual_seed does not make the noise predictable), but "
        "the generator itself is not cryptographic; the accounted epsilon assumes ideal "
        "randomness.",
        InsecureRNGWarning,
        stacklevel=2,
    )
    silence_harmless_warnings()
    sample_rate = 1.0 / max(1, len(data_loader))
    steps = epochs * max(1, len(data_loader))
    with warnings.catch_warnings():
        for noise in _OPACUS_NOISE:
            warnings.filterwarnings("ignore", message=noise)
        engine = opacus.PrivacyEngine(accountant=accountant, secure_mode=False)
        # What PrivacyEngine.make_private_with_epsilon does, in two steps: the noise
        # level first, then the wrapping; the budget is charged once Opacus has accepted
        # the model, optimizer and loader (an Opacus refusal charges nothing).
        try:
            noise_multiplier = float(
                opacus.accountants.utils.get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=target_delta,
                    sample_rate=sample_rate,
                    epochs=epochs,
                    accountant=accountant,
                )
            )
        except ValueError as exc:
            raise DPConfigurationError(
                f"no noise level reaches epsilon={target_epsilon} at delta={target_delta} in "
                f"{epochs} epoch(s): {exc}. Fix: raise target_epsilon or lower epochs."
            ) from exc
        try:
            module, optimizer, data_loader = engine.make_private(
                module=module,
                optimizer=optimizer,
                data_loader=data_loader,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                poisson_sampling=poisson_sampling,
                noise_generator=_unpredictable_generator(),
            )
        except (ValueError, TypeError) as exc:
            raise DPConfigurationError(
                f"Opacus could not prepare DP-SGD: {exc}. Nothing was charged to the budget. "
                "Fix: build the optimizer over this module's own parameters (after "
                "pets.dp.fix_model, over the fixed module's), and pass a torch DataLoader "
                "with a batch size."
            ) from exc
        sampler: Any = getattr(data_loader, "batch_sampler", None)
        if poisson_sampling and hasattr(sampler, "generator"):  # Opacus' Poisson sampler
            sampler.generator = _unpredictable_generator()
    entry = None
    if budget is not None:
        label = label or f"DP-SGD {epochs} epoch(s)"
        try:
            entry = budget.spend_event(
                dp_sgd_event(noise_multiplier, sample_rate, steps),
                epsilon=target_epsilon,
                delta=target_delta,
                label=label,
            )
        except BaseException:
            wrapped: Any = module
            wrapped._close()  # Opacus' hooks off again: the caller's model is as it was
            raise
        StepCharger(
            budget, noise_multiplier=noise_multiplier, sample_rate=sample_rate,
            planned_steps=steps, charged_epsilon=target_epsilon, delta=target_delta,
            accountant=accountant, label=label,
        ).attach(optimizer)
    return PrivateTraining(
        module=module,
        optimizer=optimizer,
        data_loader=data_loader,
        engine=engine,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        sample_rate=sample_rate,
        target_epsilon=target_epsilon,
        target_delta=target_delta,
        epochs=epochs,
        ledger_entry=entry,
    )
