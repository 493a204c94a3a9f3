"""Divide one draw of noise into independent shares whose sum is that draw's distribution.

Laplace, Gaussian and discrete Laplace are *infinitely divisible*: for any
number of parts ``n`` there is a distribution whose ``n`` independent draws
sum to exactly the whole one. Each party of a multi-party run adds one such
share to its own secret share, so the released value carries exactly the
mechanism's noise and no party knows the total:

* Gaussian ``N(0, s^2)`` is the sum of ``n`` draws of ``N(0, s^2/n)``;
* Laplace ``b`` is ``E1 - E2`` with ``E ~ Exponential(b) = Gamma(1, b)``, and
  ``Gamma(1, b)`` is the sum of ``n`` draws of ``Gamma(1/n, b)``;
* discrete Laplace (``P[z] ~ q^|z|``) is ``G1 - G2`` with ``G`` geometric,
  ``G ~ NegativeBinomial(1, 1 - q)``, the sum of ``n`` draws of
  ``NegativeBinomial(1/n, 1 - q)``.

The discrete Gaussian is not infinitely divisible; the sum of ``n`` discrete
Gaussians of ``s/sqrt(n)`` is within a negligible distance of the discrete
Gaussian of ``s`` once ``s/sqrt(n) >= 1`` (Kairouz, Liu & Steinke 2021, "The
distributed discrete Gaussian mechanism"), which the mechanism checks.

Gamma and negative-binomial shares come from numpy's PCG64DXSM generator,
freshly seeded from the OS CSPRNG for every call: their values never leave
the party in the clear (they are added to a secret share).
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt

from pets.errors import DPConfigurationError

__all__ = ["check_parts", "gamma_difference", "negative_binomial_difference"]


def check_parts(parts: int) -> int:
    """``parts`` if it is a whole number >= 1, else a ``DPConfigurationError``."""
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise DPConfigurationError(
            f"noise can be split into a whole number of parts >= 1, got {parts!r}. "
            "Fix: pass the number of parties that each add a share."
        )
    return int(parts)


def _generator() -> np.random.Generator:
    return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))


def gamma_difference(
    shape: tuple[int, ...], *, scale: float, parts: int
) -> npt.NDArray[np.float64]:
    """One of ``parts`` shares of Laplace(``scale``) noise: ``Gamma(1/parts) - Gamma(1/parts)``."""
    rng = _generator()
    shape_parameter = 1.0 / check_parts(parts)
    return rng.gamma(shape_parameter, scale, shape) - rng.gamma(shape_parameter, scale, shape)


def negative_binomial_difference(
    shape: tuple[int, ...], *, scale: float, parts: int
) -> npt.NDArray[np.int64]:
    """One of ``parts`` shares of discrete Laplace(``scale``) noise, in integers."""
    rng = _generator()
    success = -np.expm1(-1.0 / scale)  # 1 - q, q = exp(-1/scale), accurate for large scales
    count = 1.0 / check_parts(parts)
    first = rng.negative_binomial(count, success, shape)
    second = rng.negative_binomial(count, success, shape)
    return (first - second).astype(np.int64)
