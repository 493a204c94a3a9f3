"""DP noise that the parties of a multi-party run generate together, at its nominal scale.

:func:`joint_noise` adds one mechanism's noise to a private tensor. On a
single-party backend (plain, CKKS) that is one draw. Under MPC each of the
``P`` parties adds a *share* of the noise to its own secret share, locally and
with no communication; the shares are drawn from distributions whose sum is
exactly the mechanism's noise (see :mod:`pets.dp._splitting`):

==================  ===========================================  =======
mechanism           party's share                                sum
==================  ===========================================  =======
Gaussian sigma      ``N(0, sigma^2 / P)``                        exact
Laplace b           ``Gamma(1/P, b) - Gamma(1/P, b)``            exact
discrete Laplace    difference of two ``NegBinomial(1/P, 1-q)``  exact
discrete Gaussian   discrete Gaussian of ``sigma / sqrt(P)``     within 1e-8
==================  ===========================================  =======

No party knows the noise in the result; a party knows its own share of it.
A coalition of ``k`` parties that sees the released value can subtract its
``k`` shares, so what protects the result from it is the other ``P - k``
shares: for the Gaussian, ``N(0, sigma^2 (P - k) / P)``; for Laplace, a
difference of ``Gamma((P - k) / P)`` draws, which gives no pure-epsilon
guarantee at all once ``k >= P / 2``. Pass ``colluding=k`` to keep the whole
guarantee against any ``k`` colluding parties: every share is then drawn as
one of ``P - k``, so that any ``P - k`` shares alone form the whole noise, and
the released noise is ``sqrt(P / (P - k))`` times the nominal std.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from pets.dp._splitting import check_parts
from pets.dp.mechanisms import AdditiveMechanism
from pets.errors import DPConfigurationError

__all__ = ["joint_noise"]


class _WithstandingCollusion:
    """A mechanism whose shares are drawn as one of ``parts - colluding`` (see ``colluding``)."""

    def __init__(self, mechanism: AdditiveMechanism, colluding: int) -> None:
        self.mechanism = mechanism
        self.colluding = colluding

    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[Any]:
        return self.mechanism.noise(shape)

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[Any]:
        return self.mechanism.noise_share(shape, parts=parts - self.colluding)


def joint_noise(tensor: Any, mechanism: AdditiveMechanism, *, colluding: int = 0) -> Any:
    """``tensor`` plus ``mechanism``'s noise, added inside its backend; nothing is revealed.

    Under MPC every party calls it (the same call on every party) and adds its
    share of the noise to its own secret share: the total has exactly the
    mechanism's distribution and no single party knows it. ``colluding=k``
    sizes the shares so that any ``k`` colluding parties still face the whole
    mechanism (the total is then larger; see the module's docstring). The
    result is still private: reveal it with ``backend.decrypt`` (or use
    :func:`pets.dp.release`, which also charges a budget). This is the call
    for DP-SGD under MPC: noise the summed clipped gradients, then use them.

    >>> import numpy as np, pets, pets.dp
    >>> be = pets.backend("plain")
    >>> noisy = pets.dp.joint_noise(be.encrypt(np.zeros(3)), pets.dp.LaplaceMechanism(1.0))
    >>> be.decrypt(noisy).shape
    (3,)
    """
    if not isinstance(mechanism, AdditiveMechanism):
        raise DPConfigurationError(
            f"joint_noise needs an additive mechanism (noise added to the result), got "
            f"{type(mechanism).__name__}. Fix: use LaplaceMechanism, GaussianMechanism, "
            "DiscreteLaplaceMechanism or DiscreteGaussianMechanism."
        )
    backend = tensor.backend
    parties = int(backend.parties)
    if isinstance(colluding, bool) or not isinstance(colluding, int) or not (
        0 <= colluding < max(parties, 1)
    ):
        raise DPConfigurationError(
            f"colluding={colluding!r} with {parties} part{'y' if parties == 1 else 'ies'}: "
            f"it counts the parties that may pool their noise shares, from 0 to "
            f"{max(parties - 1, 0)}. Fix: pass a whole number in that range."
        )
    if colluding:
        check_parts(parties - colluding)
        return backend.add_noise(tensor, _WithstandingCollusion(mechanism, colluding))
    return backend.add_noise(tensor, mechanism)
