"""Output perturbation of a private result held by a backend: noise, then reveal.

:func:`release` is what the key holder (HE) or the parties (MPC) call to turn a
private result into a differentially private plaintext. It uses only the
public backend contract: ``backend.add_noise(tensor, mechanism)`` and
``backend.decrypt(tensor)``. The noise is added *inside* the backend, so the
exact result is never decrypted: under HE the key holder's draw is added to
the ciphertext (it protects the result from those it is released to; the key
holder could decrypt it exactly anyway); under MPC the parties add shares of
the noise that sum to exactly the mechanism's (:func:`pets.dp.joint_noise`),
so no single party knows the total noise.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pets.dp.budget import Budget
from pets.dp.joint import joint_noise
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
    colluding: int = 0,
) -> npt.NDArray[Any]:
    """Add ``mechanism``'s noise to a private ``tensor`` inside its backend, then decrypt.

    The spend is recorded in ``budget`` *before* anything is decrypted; if it
    would exceed the budget, ``BudgetExceededError`` is raised and nothing is
    decrypted. ``mechanism.sensitivity`` must bound what one person can change
    in the whole result. ``colluding`` is :func:`pets.dp.joint_noise`'s: how many
    parties of an MPC run may pool their noise shares and still face the whole noise.

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
    noisy = joint_noise(tensor, mechanism, colluding=colluding)
    if budget is not None:
        budget.spend_mechanism(mechanism, label=label)
    return np.asarray(tensor.backend.decrypt(noisy))
