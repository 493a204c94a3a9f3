"""pets: privacy-enhancing technologies for machine learning, behind one interface.

>>> import numpy as np, pets
>>> be = pets.backend("plain")              # also "ckks", "mpc"; options as keywords
>>> x = be.encrypt(np.array([[1.0, -2.0]]))
>>> be.decrypt((x * 0.5 + x) @ np.eye(2)).tolist()
[[1.5, -3.0]]

``import pets`` imports no engine (TenSEAL, CrypTen, Opacus, Flower, torch): each loads
when the feature that needs it is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pets.backends.base import Backend, Capabilities, Requirements
from pets.errors import (
    AuthenticationError,
    BackendError,
    BackendNotInstalledError,
    BudgetExceededError,
    BudgetFileError,
    CompileError,
    DepthExhaustedError,
    DPConfigurationError,
    InsecureProviderWarning,
    KeyMismatchError,
    LayoutMismatchError,
    MissingKeyError,
    NonFiniteValueError,
    ParameterError,
    PartyError,
    PetsError,
    PrivacyError,
    ProtocolError,
    RequestRefusedError,
    SerializationError,
    ServiceError,
    ServiceUnavailableError,
    ShapeMismatchError,
    TensorError,
    UnknownBackendError,
    UnsupportedModelError,
    UnsupportedOperationError,
    ValueRangeError,
    WorkerError,
)
from pets.measure import Measurement, measure
from pets.network import Network, network, network_profile
from pets.record import record, verify_record
from pets.registry import available_backends, backend, load_backend, register_backend
from pets.tensor import PrivateTensor, concat

if TYPE_CHECKING:
    from pets import attacks, dp, functions, nn
    from pets.compiler import PrivateModel, compile, load_model
    from pets.parties import Party, run_parties

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackendNotInstalledError",
    "BudgetExceededError",
    "Capabilities",
    "BudgetFileError",
    "CompileError",
    "DPConfigurationError",
    "DepthExhaustedError",
    "InsecureProviderWarning",
    "KeyMismatchError",
    "LayoutMismatchError",
    "Measurement",
    "Network",
    "MissingKeyError",
    "NonFiniteValueError",
    "ParameterError",
    "Party",
    "PartyError",
    "PetsError",
    "AuthenticationError",
    "ProtocolError",
    "RequestRefusedError",
    "ServiceError",
    "ServiceUnavailableError",
    "WorkerError",
    "PrivacyError",
    "PrivateModel",
    "PrivateTensor",
    "Requirements",
    "SerializationError",
    "ShapeMismatchError",
    "TensorError",
    "UnknownBackendError",
    "UnsupportedModelError",
    "UnsupportedOperationError",
    "ValueRangeError",
    "attacks",
    "available_backends",
    "backend",
    "compile",
    "concat",
    "functions",
    "dp",
    "load_backend",
    "load_model",
    "load_tensor",
    "measure",
    "network",
    "network_profile",
    "nn",
    "record",
    "register_backend",
    "run_parties",
    "verify_record",
]

# name -> module that defines it; imported on first access (these pull in torch).
_LAZY = {
    "compile": "pets.compiler",
    "PrivateModel": "pets.compiler",
    "load_model": "pets.compiler",
    "attacks": "pets.attacks",
    "dp": "pets.dp",
    "functions": "pets.functions",
    "nn": "pets.nn",
    "Party": "pets.parties",
    "run_parties": "pets.parties",
}


def load_tensor(data: bytes, backend: Backend, *, key: bytes | None = None) -> PrivateTensor:
    """Load a tensor from ``PrivateTensor.to_bytes()`` under ``backend``'s keys.

    ``key``: the HMAC key the bytes were authenticated with (``to_bytes(key=...)``).
    """
    return backend.load_tensor(data, key=key)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"pets.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pets' has no attribute {name!r}")
