"""Membership inference: was this record in the training set? (loss, LiRA, RMIA)

The *membership inference* threat of docs/threats.md. The attacks themselves live
in :mod:`pets.dp.auditing` and :func:`pets.dp.audit` stays the DP-facing entry
(it also bounds epsilon from below); this is the same audit under the attacks
namespace, choosing every attack the data allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pets.dp.auditing import AuditReport, audit
from pets.dp.auditing.attacks import Data, TrainFn

if TYPE_CHECKING:
    import torch

__all__ = ["membership_inference"]


def membership_inference(
    model: torch.nn.Module,
    members: Data,
    non_members: Data,
    *,
    attacks: Sequence[str] | None = None,
    reference: Data | None = None,
    train_fn: TrainFn | None = None,
    num_shadows: int = 4,
    confidence: float = 0.95,
    delta: float = 0.0,
    fpr: Sequence[float] = (0.01, 0.001),
    seed: int = 0,
) -> AuditReport:
    """Run membership-inference attacks on a classifier: AUC, TPR at low FPR, epsilon bound.

    ``attacks=None`` runs ``loss``, and also ``lira`` and ``rmia`` when
    ``reference`` data and a ``train_fn`` are given (see :func:`pets.dp.audit`
    for every option). The report's ``to_dict()`` is JSON-safe.

    >>> import numpy as np, torch, pets
    >>> torch.manual_seed(0) and None
    >>> data = (np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 2)
    >>> report = pets.attacks.membership_inference(torch.nn.Linear(2, 2), data, data)
    >>> list(report.results), report.epsilon_lower_bound
    (['loss'], 0.0)
    """
    if attacks is None:
        with_shadows = reference is not None and train_fn is not None
        attacks = ("loss", "lira", "rmia") if with_shadows else ("loss",)
    return audit(
        model, members, non_members, attacks=attacks, reference=reference, train_fn=train_fn,
        num_shadows=num_shadows, confidence=confidence, delta=delta, fpr=fpr, seed=seed,
    )
