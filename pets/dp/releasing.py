"""Output perturbation of a private result held by a backend: noise, then reveal.

:func:`release` is what the key holder (HE) or the parties (MPC) call to turn a
private result into a differentially private plaintext. It uses only the
public backend contract: ``backend.add_noise(tensor, mechanism)`` and
``backend.decrypt(tensor)``. The noise is added *inside* the backend, so the
exact result is never decrypted: under HE the key holder's draw is added to
the ciphertext (it protects the result from those it is released to; the key
holder could decrypt it exactly anyway); an MPC backend overrides
``add_noise`` so that the parties add noise shares and no single party knows
the total noise.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pets.dp.budget import Budget
from pets.dp.mechanisms import AdditiveMechanism
from pets.errors import DPConfigurationError

__all__ = ["release"]


class _Private(Protocol):
    @property
    def backend(self) -> Any: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __add__(self, other: Any) -> Any: ...


def release(
    tensor: _Private,
    *,
    mechanism: AdditiveMechanism,
    budget: Budget | None = None,
    label: str | None = None,
) -> npt.NDArray[Any]:
    """Add ``mechanism``'s noise to a private ``tensor`` inside its backend, then decrypt.

    The spend is recorded in ``budget`` *before* anything is decrypted; if it
    would exceed the budget, ``BudgetExceededError`` is raised and nothing is
    decrypted. ``mechanism.sensitivity`` must bound what one person can change
    in the whole result.

    >>> import numpy as np, pets, pets.dp
    >>> be = pets.backend("plain")
    >>> total = be.encrypt(np.array([41.0, 17.0]))
    >>> pets.dp.release(total, mechanism=pets.dp.LaplaceMechanism(1.0, 1.0)).shape
    (2,)
    """
    if not isinstance(mechanism, AdditiveMechanism):
        raise DPConfigurationError(
            f"release needs an additive mechanism (noise added to the result), got "
            f"{type(mechanism).__name__}. Fix: use LaplaceMechanism, GaussianMechanism, "
            "DiscreteLaplaceMechanism or DiscreteGaussianMechanism."
        )
    backend = tensor.backend
    if budget is not None:
        budget.spend_mechanism(mechanism, label=label)
    return np.asarray(backend.decrypt(backend.add_noise(tensor, mechanism)))
