"""Every error pets raises, in one tree.

Each message says what went wrong *and what to do about it*. Errors raised by
the engines underneath (TenSEAL, CrypTen, Opacus) are caught at the boundary and
re-raised as one of these with ``raise ... from exc``, so callers only ever need
to catch ``pets.PetsError``.

::

    PetsError
    ├── BackendError
    │   ├── UnknownBackendError          pets.backend("nope")
    │   ├── BackendNotInstalledError     the engine behind a backend is not installed
    │   └── ParameterError               parameters that cannot work (insecure, too small)
    ├── TensorError
    │   ├── ShapeMismatchError           operands whose shapes do not fit
    │   ├── NonFiniteValueError          NaN or inf handed to encrypt or an operator
    │   ├── ValueRangeError              values beyond where the scheme keeps precision
    │   ├── DepthExhaustedError          no multiplicative depth left for this operation
    │   ├── LayoutMismatchError          tensors packed differently mixed in one operation
    │   ├── KeyMismatchError             tensors of different backends or keys mixed
    │   └── UnsupportedOperationError    an operation this backend cannot do (see its capabilities)
    ├── MissingKeyError                  decrypting without the secret key, a missing rotation key
    ├── SerializationError               malformed, truncated or foreign bytes given to a loader
    ├── CompileError
    │   └── UnsupportedModelError        every unsupported layer, reported at once
    ├── PartyError                       a party in a multi-party run failed or died
    │   ├── AuthenticationError          a peer that could not prove it belongs to this run
    │   └── ProtocolError                a peer that broke the protocol (malformed hello or message)
    ├── WorkerError                      a local worker process failed, died or did not answer
    ├── ServiceError                     the HTTP service or its client could not do the request
    │   ├── ServiceUnavailableError      the server is unreachable, full, or cannot bind its port
    │   └── RequestRefusedError          the server refused the request (4xx), with its reason
    └── PrivacyError
        ├── BudgetExceededError          a spend that would exceed the privacy budget
        ├── BudgetFileError              a budget file that is missing or corrupt
        └── DPConfigurationError         a mechanism or DP-SGD setting that cannot give the promise

    InsecureProviderWarning (a UserWarning)  an MPC run whose triples party 0 makes (it sees all)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendNotInstalledError",
    "BudgetExceededError",
    "BudgetFileError",
    "CompileError",
    "DPConfigurationError",
    "DepthExhaustedError",
    "InsecureProviderWarning",
    "KeyMismatchError",
    "LayoutMismatchError",
    "MissingKeyError",
    "ModelIssue",
    "NonFiniteValueError",
    "ParameterError",
    "PartyError",
    "PetsError",
    "PrivacyError",
    "ProtocolError",
    "RequestRefusedError",
    "SerializationError",
    "ServiceError",
    "ServiceUnavailableError",
    "ShapeMismatchError",
    "TensorError",
    "UnknownBackendError",
    "UnsupportedModelError",
    "UnsupportedOperationError",
    "ValueRangeError",
    "WorkerError",
]


class PetsError(Exception):
    """Base of every error pets raises."""


# --- backends ---------------------------------------------------------------


class BackendError(PetsError):
    """A backend cannot be created or used as asked."""


class UnknownBackendError(BackendError, ValueError):
    """A backend name that is not registered."""


class BackendNotInstalledError(BackendError, ImportError):
    """The engine a backend needs is not installed."""


class ParameterError(BackendError, ValueError):
    """Scheme parameters that cannot work: insecure, too small for the slots or depth asked."""


# --- tensors ----------------------------------------------------------------


class TensorError(PetsError):
    """An operation on private tensors that cannot be carried out as asked."""


class ShapeMismatchError(TensorError, ValueError):
    """Operands whose shapes do not fit together."""


class NonFiniteValueError(TensorError, ValueError):
    """NaN or infinity where a finite number is needed."""


class ValueRangeError(TensorError, ValueError):
    """Values beyond the range in which the scheme keeps its precision."""


class DepthExhaustedError(TensorError):
    """The ciphertext has no multiplicative depth left for this operation."""


class LayoutMismatchError(TensorError, ValueError):
    """Two tensors packed in different layouts used in one operation."""


class KeyMismatchError(TensorError, ValueError):
    """Tensors from different backends or different keys used together."""


class UnsupportedOperationError(TensorError, TypeError):
    """An operation the backend cannot carry out: its capabilities do not include it.

    The message names the capability and a backend (or packing) that has it.
    """


class MissingKeyError(PetsError):
    """A key this operation needs is not held: the secret key, or a rotation key."""


class SerializationError(PetsError, ValueError):
    """Bytes that are malformed, truncated, or not what the loader expects."""


# --- compile ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelIssue:
    """One problem found in a model: where, why, and what to use instead."""

    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem} Fix: {self.fix}"


class CompileError(PetsError):
    """A model that cannot be compiled for private inference."""


class UnsupportedModelError(CompileError):
    """A model with layers pets cannot run privately; lists every one at once."""

    def __init__(self, issues: Sequence[ModelIssue]) -> None:
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(
            f"the model has {len(self.issues)} unsupported part(s):\n{lines}"
        )


# --- parties ----------------------------------------------------------------


class PartyError(PetsError):
    """A party of a multi-party run failed, died or did not answer in time."""


class AuthenticationError(PartyError):
    """A peer that could not prove it belongs to this run (wrong or missing run secret)."""


class ProtocolError(PartyError):
    """A peer that sent a malformed hello, header or message; nothing of it was used."""


# --- local workers and the service -------------------------------------------


class WorkerError(PetsError):
    """A local worker process (e.g. of ``model(x, workers=k)``) failed, died or hung."""


class ServiceError(PetsError):
    """The HTTP inference service, or its client, could not carry out the request."""


class ServiceUnavailableError(ServiceError):
    """The server cannot be reached, is full, or cannot bind its port."""


class RequestRefusedError(ServiceError):
    """The server refused the request (an HTTP 4xx); the message carries its reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InsecureProviderWarning(UserWarning):
    """An MPC run whose Beaver triples party 0 makes: party 0 can read every secret."""


# --- privacy ----------------------------------------------------------------


class PrivacyError(PetsError):
    """A differential-privacy setting or spend that cannot be honoured."""


class BudgetExceededError(PrivacyError):
    """A spend that would take the privacy budget past its limit; nothing was recorded."""


class BudgetFileError(PrivacyError):
    """A saved privacy budget that is missing, corrupt or not a budget file."""


class DPConfigurationError(PrivacyError, ValueError):
    """A mechanism or DP-SGD configuration that cannot deliver the stated guarantee."""
