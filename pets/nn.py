"""Activations that homomorphic encryption computes exactly.

HE adds and multiplies; a polynomial is all it evaluates. ``Square`` (one
multiplicative level) and ``PolyActivation`` (a polynomial you choose, trained
with the model) compile without approximation, unlike ReLU or Sigmoid, which
``pets.compile`` replaces by a fitted polynomial.

>>> import torch, pets
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), pets.nn.Square(), torch.nn.Linear(8, 2))
>>> model(torch.ones(1, 4)).shape
torch.Size([1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PolyActivation", "Square"]


class Square(nn.Module):
    """``x * x``: the cheapest non-linear activation under HE (one level).

    >>> Square()(torch.tensor([-2.0, 3.0])).tolist()
    [4.0, 9.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class PolyActivation(nn.Module):
    """``c0 + c1 x + c2 x^2 + ...`` element-wise, with fixed power-basis coefficients.

    Compiles exactly; its depth is that of :func:`pets.polynomial.depth`.

    >>> PolyActivation([0.5, 0.25])(torch.tensor([2.0])).tolist()
    [1.0]
    """

    coefficients: torch.Tensor

    def __init__(self, coefficients: Sequence[float]) -> None:
        super().__init__()
        if len(coefficients) < 2:
            raise ValueError(
                "PolyActivation needs at least two coefficients (c0, c1); "
                "a constant does not depend on its input"
            )
        self.register_buffer(
            "coefficients", torch.tensor([float(c) for c in coefficients], dtype=torch.float64)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.coefficients.to(x.dtype)
        result = torch.zeros_like(x) + coefficients[-1]
        for c in coefficients.flip(0)[1:]:  # Horner
            result = result * x + c
        return result

    def extra_repr(self) -> str:
        return f"coefficients={[round(float(c), 6) for c in self.coefficients]}"
