"""Differential privacy: noise on inputs, outputs or training, with a budget that is enforced.

Three ways to use it:

* **input perturbation** (local DP): each person noises their own data before
  it leaves them, e.g. :func:`randomized_response` or :func:`laplace`;
* **output perturbation**: noise on a statistic or a model's result before it
  is released, e.g. :func:`gaussian`, or :func:`release` for a result still
  encrypted (HE) or secret-shared (MPC);
* **algorithm perturbation**: DP-SGD, noise in every training step
  (:func:`make_private`, through Opacus).

Every spend can be recorded in a :class:`Budget`, which refuses the one that
would exceed it. :func:`audit` measures what a trained model still leaks.

``import pets.dp`` imports none of OpenDP, Opacus, dp-accounting or torch:
they load when first used.

>>> import pets.dp
>>> budget = pets.dp.Budget(epsilon=1.0)
>>> noisy_count = pets.dp.discrete_laplace(412, epsilon=0.5, sensitivity=1, budget=budget)
>>> budget.remaining
(0.5, 0.0)
"""

from pets.dp.auditing import AttackResult, AuditReport, audit, register_attack, registered_attacks
from pets.dp.budget import Budget, LedgerEntry
from pets.dp.clipping import clip_l2, clip_values
from pets.dp.composition import register_composition, registered_compositions
from pets.dp.functional import (
    discrete_gaussian,
    discrete_laplace,
    gaussian,
    laplace,
    randomized_response,
)
from pets.dp.joint import joint_noise
from pets.dp.mechanisms import (
    AdditiveMechanism,
    DiscreteGaussianMechanism,
    DiscreteLaplaceMechanism,
    GaussianMechanism,
    LaplaceMechanism,
    Mechanism,
    RandomizedResponse,
    gaussian_sigma,
    make_mechanism,
    register_mechanism,
    registered_mechanisms,
)
from pets.dp.releasing import release
from pets.dp.sgd import SGD
from pets.dp.training import InsecureRNGWarning, PrivateTraining, fix_model, make_private
from pets.errors import BudgetExceededError, BudgetFileError, DPConfigurationError, PrivacyError

__all__ = [
    "AdditiveMechanism",
    "AttackResult",
    "AuditReport",
    "Budget",
    "BudgetExceededError",
    "BudgetFileError",
    "DPConfigurationError",
    "DiscreteGaussianMechanism",
    "DiscreteLaplaceMechanism",
    "GaussianMechanism",
    "InsecureRNGWarning",
    "LaplaceMechanism",
    "LedgerEntry",
    "Mechanism",
    "PrivacyError",
    "PrivateTraining",
    "RandomizedResponse",
    "SGD",
    "audit",
    "clip_l2",
    "clip_values",
    "discrete_gaussian",
    "discrete_laplace",
    "fix_model",
    "gaussian",
    "gaussian_sigma",
    "joint_noise",
    "laplace",
    "make_mechanism",
    "make_private",
    "randomized_response",
    "register_attack",
    "register_composition",
    "register_mechanism",
    "registered_attacks",
    "registered_compositions",
    "registered_mechanisms",
    "release",
]
