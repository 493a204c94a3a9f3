"""Membership-inference attacks, registered by name; each scores members higher.

``loss``   Yeom et al. 2018: a training example tends to have a lower loss.
           Score = -cross-entropy. Needs nothing but the model.
``lira``   Carlini et al. 2022, *offline* LiRA: train a few shadow models on
           ``reference`` data that excludes the targets, fit the distribution
           of each target's logit-scaled confidence ``log(p_y / (1 - p_y))``
           under "not a member", and score how far the real model's value
           lies above it (z-score, one global variance as the paper advises
           for few shadows). Needs ``reference=(X, y)`` and
           ``train_fn(X, y) -> nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from pets.dp._imports import require
from pets.errors import DPConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "AttackContext",
    "per_example_statistics",
    "register_attack",
    "registered_attacks",
]

FloatArray = npt.NDArray[np.float64]
Data = tuple[Any, Any]
TrainFn = Callable[[Any, Any], "torch.nn.Module"]
Scores = tuple[FloatArray, FloatArray]
AttackFn = Callable[["AttackContext"], Scores]

_REGISTRY: dict[str, AttackFn] = {}
F = TypeVar("F", bound=AttackFn)


@dataclass(frozen=True)
class AttackContext:
    """Everything an attack may use."""

    model: torch.nn.Module
    members: Data
    non_members: Data
    reference: Data | None = None
    train_fn: TrainFn | None = None
    num_shadows: int = 4
    seed: int = 0


def register_attack(name: str) -> Callable[[F], F]:
    """Decorator: make ``fn(context) -> (member_scores, non_member_scores)`` an attack."""

    def decorate(fn: F) -> F:
        _REGISTRY[name] = fn
        return fn

    return decorate


def registered_attacks() -> tuple[str, ...]:
    """The attack names :func:`pets.dp.audit` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get_attack(name: str) -> AttackFn:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DPConfigurationError(
            f"unknown attack {name!r}. Fix: use one of {', '.join(registered_attacks())}."
        ) from None


def per_example_statistics(model: torch.nn.Module, x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
    """Per example: cross-entropy loss and logit-scaled confidence ``log(p_y / (1 - p_y))``."""
    torch = require("torch", purpose="auditing a torch model")
    features = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in features.split(4096)]).double()
    finally:
        model.train(was_training)
    log_probs = torch.log_softmax(logits, dim=1)
    true = log_probs.gather(1, labels[:, None]).squeeze(1)
    others = log_probs.scatter(1, labels[:, None], float("-inf")).logsumexp(dim=1)
    return (-true).numpy(), (true - others).numpy()


@register_attack("loss")
def loss_attack(context: AttackContext) -> Scores:
    """Yeom et al. 2018: members have lower loss. Score = -loss."""
    member_loss, _ = per_example_statistics(context.model, *context.members)
    non_member_loss, _ = per_example_statistics(context.model, *context.non_members)
    return -member_loss, -non_member_loss


@register_attack("lira")
def lira_offline_attack(context: AttackContext) -> Scores:
    """Carlini et al. 2022, offline LiRA with ``num_shadows`` shadow models on ``reference``."""
    if context.reference is None or context.train_fn is None:
        raise DPConfigurationError(
            "attack 'lira' needs reference=(X, y), data from the same population that the "
            "model did not train on, and train_fn=callable(X, y) -> nn.Module that trains a "
            "shadow model the way the target was trained. Fix: pass both, or use attacks=('loss',)."
        )
    if context.num_shadows < 2:
        raise DPConfigurationError(
            f"num_shadows must be >= 2, got {context.num_shadows}. Fix: pass num_shadows=4."
        )
    ref_x, ref_y = np.asarray(context.reference[0]), np.asarray(context.reference[1])
    size = min(len(context.members[0]), len(ref_x) // 2)
    if size < 2:
        raise DPConfigurationError(
            f"reference holds {len(ref_x)} examples: too few for shadow models. "
            "Fix: pass at least 4 reference examples (ideally as many as the training set, twice)."
        )
    targets_x = np.concatenate([np.asarray(context.members[0]), np.asarray(context.non_members[0])])
    targets_y = np.concatenate([np.asarray(context.members[1]), np.asarray(context.non_members[1])])
    rng = np.random.default_rng(context.seed)
    shadow = []
    for _ in range(context.num_shadows):
        chosen = rng.choice(len(ref_x), size=size, replace=False)
        model = context.train_fn(ref_x[chosen], ref_y[chosen])
        shadow.append(per_example_statistics(model, targets_x, targets_y)[1])
    out = np.stack(shadow)  # shadows x targets
    mean = out.mean(axis=0)
    spread = float(np.std(out - mean, ddof=1)) or 1.0
    _, observed = per_example_statistics(context.model, targets_x, targets_y)
    score = (observed - mean) / spread
    n_members = len(context.members[0])
    return score[:n_members], score[n_members:]
