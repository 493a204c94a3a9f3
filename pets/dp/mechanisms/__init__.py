"""Noise mechanisms, one per module, found by name through a registry.

>>> import pets.dp
>>> pets.dp.registered_mechanisms()
('discrete_gaussian', 'discrete_laplace', 'gaussian', 'laplace', 'randomized_response')
"""

from pets.dp.mechanisms.base import (
    AdditiveMechanism,
    Mechanism,
    make_mechanism,
    register_mechanism,
    registered_mechanisms,
)
from pets.dp.mechanisms.discrete import DiscreteGaussianMechanism, DiscreteLaplaceMechanism
from pets.dp.mechanisms.gaussian import GaussianMechanism, gaussian_sigma
from pets.dp.mechanisms.laplace import LaplaceMechanism
from pets.dp.mechanisms.randomized_response import RandomizedResponse

__all__ = [
    "AdditiveMechanism",
    "DiscreteGaussianMechanism",
    "DiscreteLaplaceMechanism",
    "GaussianMechanism",
    "LaplaceMechanism",
    "Mechanism",
    "RandomizedResponse",
    "gaussian_sigma",
    "make_mechanism",
    "register_mechanism",
    "registered_mechanisms",
]
