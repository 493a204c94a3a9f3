"""One-call noise: ``pets.dp.laplace(x, epsilon=..., sensitivity=...)`` and friends.

Each function builds the mechanism, records the spend in ``budget`` first (if
given; nothing is sampled when the budget would be exceeded), and returns a
numpy array of ``x``'s shape (0-d for a scalar). Use them for *input
perturbation* (each person noises their own data: local DP) and *output
perturbation* (noise on a statistic or a model's result before it is released).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy.typing as npt

from pets.dp.budget import Budget
from pets.dp.mechanisms import (
    DiscreteGaussianMechanism,
    DiscreteLaplaceMechanism,
    GaussianMechanism,
    LaplaceMechanism,
    Mechanism,
    RandomizedResponse,
)

__all__ = ["discrete_gaussian", "discrete_laplace", "gaussian", "laplace", "randomized_response"]


def _apply(
    mechanism: Mechanism, x: Any, budget: Budget | None, label: str | None
) -> npt.NDArray[Any]:
    if budget is not None:
        budget.spend_mechanism(mechanism, label=label)
    return mechanism(x)


def laplace(
    x: Any,
    *,
    epsilon: float,
    sensitivity: float,
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """``x`` plus Laplace noise of scale ``sensitivity / epsilon``: epsilon-DP, L1 ``sensitivity``.

    >>> import pets.dp
    >>> noisy = pets.dp.laplace([120.0, 45.0], epsilon=1.0, sensitivity=1.0)
    >>> noisy.shape
    (2,)
    """
    return _apply(LaplaceMechanism(epsilon, sensitivity), x, budget, label)


def gaussian(
    x: Any,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    calibration: str = "analytic",
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """``x`` plus Gaussian noise calibrated for ``(epsilon, delta)``-DP at L2 ``sensitivity``.

    >>> import pets.dp
    >>> pets.dp.gaussian(0.0, epsilon=1.0, delta=1e-5, sensitivity=1.0).shape
    ()
    """
    mechanism = GaussianMechanism(epsilon, delta, sensitivity, calibration=calibration)
    return _apply(mechanism, x, budget, label)


def discrete_laplace(
    x: Any,
    *,
    epsilon: float,
    sensitivity: float,
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """Integers ``x`` plus exact discrete Laplace noise: epsilon-DP for L1 ``sensitivity``.

    >>> import pets.dp
    >>> pets.dp.discrete_laplace([3, 7], epsilon=1.0, sensitivity=1).dtype.name
    'int64'
    """
    return _apply(DiscreteLaplaceMechanism(epsilon, sensitivity), x, budget, label)


def discrete_gaussian(
    x: Any,
    *,
    epsilon: float,
    delta: float,
    sensitivity: float,
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """Integers ``x`` plus exact discrete Gaussian noise: (epsilon, delta)-DP, L2 ``sensitivity``.

    >>> import pets.dp
    >>> pets.dp.discrete_gaussian([3, 7], epsilon=1.0, delta=1e-6, sensitivity=1).shape
    (2,)
    """
    mechanism = DiscreteGaussianMechanism(epsilon, delta, sensitivity)
    return _apply(mechanism, x, budget, label)


def randomized_response(
    bits_or_labels: Any,
    *,
    epsilon: float,
    categories: Sequence[Hashable] | None = None,
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """Randomized response: each value is one person's, reported truthfully with prob. ``p``.

    ``p = e^eps / (1 + e^eps)`` for bits, ``e^eps / (e^eps + k - 1)`` for ``k`` categories.

    >>> import pets.dp
    >>> pets.dp.randomized_response([0, 1, 1], epsilon=2.0).shape
    (3,)
    >>> pets.dp.randomized_response(["a", "b"], epsilon=2.0, categories=["a", "b", "c"]).shape
    (2,)
    """
    return _apply(RandomizedResponse(epsilon, categories), bits_or_labels, budget, label)
