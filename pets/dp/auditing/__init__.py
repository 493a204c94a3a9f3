"""Audit a trained classifier with membership inference: how much does it leak?

>>> report = pets.dp.audit(model, members=(X_train, y_train),
...                        non_members=(X_test, y_test))  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.dp._validation import check_delta
from pets.dp.auditing.attacks import (
    AttackContext,
    Data,
    TrainFn,
    get_attack,
    register_attack,
    registered_attacks,
)
from pets.dp.auditing.bounds import auc, epsilon_lower_bound, tpr_at_fpr
from pets.dp.auditing.report import AttackResult, AuditReport
from pets.dp.auditing.rmia import rmia_attack  # noqa: F401 (registers "rmia")
from pets.errors import DPConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "AttackResult",
    "AuditReport",
    "audit",
    "register_attack",
    "registered_attacks",
]


def _check_data(name: str, data: Any) -> Data:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DPConfigurationError(
            f"{name} must be a pair (X, y), got {type(data).__name__}. Fix: pass {name}=(X, y)."
        )
    x, y = data
    if len(x) != len(y) or len(x) < 4:
        raise DPConfigurationError(
            f"{name} must hold as many labels as rows, and at least 4 of each; got "
            f"{len(x)} rows and {len(y)} labels. Fix: pass matching X and y."
        )
    return x, y


def audit(
    model: torch.nn.Module,
    members: Data,
    non_members: Data,
    *,
    attacks: Sequence[str] = ("loss",),
    reference: Data | None = None,
    train_fn: TrainFn | None = None,
    num_shadows: int = 4,
    confidence: float = 0.95,
    delta: float = 0.0,
    fpr: Sequence[float] = (0.01, 0.001),
    seed: int = 0,
) -> AuditReport:
    """Run membership-inference ``attacks`` on a classifier and bound its epsilon from below.

    ``model`` maps a float tensor of features to class logits. ``members`` are
    examples it trained on, ``non_members`` examples from the same population
    it did not; use as many of each. ``delta`` is the delta of the DP claim
    being checked (0 for a non-private model). The ``lira`` attack also needs
    ``reference`` data and a ``train_fn(X, y) -> nn.Module`` that trains a
    model the way the audited one was trained.

    >>> import numpy as np, torch, pets.dp
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Linear(2, 2)
    >>> data = (np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 2)
    >>> report = pets.dp.audit(model, members=data, non_members=data)
    >>> report.epsilon_lower_bound
    0.0
    """
    members = _check_data("members", members)
    non_members = _check_data("non_members", non_members)
    if reference is not None:
        reference = _check_data("reference", reference)
    if not (isinstance(confidence, float) and 0.5 <= confidence < 1):
        raise DPConfigurationError(
            f"confidence must be a float in [0.5, 1), got {confidence!r}. Fix: pass e.g. 0.95."
        )
    delta = check_delta(delta)
    names = list(dict.fromkeys(attacks))
    if not names:
        raise DPConfigurationError(
            "attacks must name at least one attack. "
            f"Fix: use some of {', '.join(registered_attacks())}."
        )
    functions = [get_attack(name) for name in names]
    per_attack_confidence = 1.0 - (1.0 - confidence) / len(names)
    context = AttackContext(model, members, non_members, reference, train_fn, num_shadows, seed)
    results: dict[str, AttackResult] = {}
    for name, attack in zip(names, functions, strict=True):
        member_scores, non_member_scores = attack(context)
        member_scores = np.asarray(member_scores, dtype=np.float64)
        non_member_scores = np.asarray(non_member_scores, dtype=np.float64)
        bound = epsilon_lower_bound(
            member_scores,
            non_member_scores,
            confidence=per_attack_confidence,
            delta=delta,
            seed=seed,
        )
        results[name] = AttackResult(
            attack=name,
            auc=auc(member_scores, non_member_scores),
            tpr_at_fpr={f: tpr_at_fpr(member_scores, non_member_scores, f) for f in fpr},
            epsilon_lower_bound=bound.lower,
            epsilon_estimate=bound.estimate,
            epsilon_interval=(bound.lower, bound.upper),
            threshold=bound.threshold,
        )
    notes = []
    if min(fpr) < 1.0 / len(non_members[0]):
        notes.append(
            f"note: with {len(non_members[0])} non-members, TPR at FPR below "
            f"{1.0 / len(non_members[0]):.3g} is TPR at FPR 0."
        )
    return AuditReport(
        results=results,
        confidence=confidence,
        delta=delta,
        n_members=len(members[0]),
        n_non_members=len(non_members[0]),
        notes=tuple(notes),
    )
