"""Activations that homomorphic encryption computes exactly, and a way to switch a model to them.

HE adds and multiplies; a polynomial is all it evaluates. ``Square`` (one
multiplicative level) and ``PolyActivation`` (a polynomial you choose, trained
with the model) compile without approximation, unlike ReLU or Sigmoid, which
``pets.compile`` replaces by a fitted polynomial. :func:`he_friendly` swaps a
trained model's ReLU/GELU/SiLU for trainable low-degree polynomials and
fine-tunes it on your data, reporting the accuracy before and after.

>>> import torch, pets
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), pets.nn.Square(), torch.nn.Linear(8, 2))
>>> model(torch.ones(1, 4)).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pets.errors import ParameterError

__all__ = ["HEFriendly", "PolyActivation", "Square", "he_friendly"]

#: the activations :func:`he_friendly` replaces
REPLACED = (nn.ReLU, nn.GELU, nn.SiLU)


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


class _TrainablePolynomial(nn.Module):
    """``c0 + c1 x + ... `` with trainable coefficients (fine-tuning only; then fixed)."""

    def __init__(self, coefficients: Sequence[float]) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.tensor([float(c) for c in coefficients]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = torch.zeros_like(x) + self.coefficients[-1]
        for c in self.coefficients.flip(0)[1:]:
            result = result * x + c
        return result


@dataclass
class HEFriendly:
    """What :func:`he_friendly` did: the new model and the accuracies it measured."""

    model: nn.Module
    #: the given model's accuracy on the data (``validation`` if given)
    accuracy_before: float
    #: the new model's accuracy on the same rows, after fine-tuning
    accuracy_after: float
    #: ``(name, activation, coefficients)`` of each replaced activation
    replaced: list[tuple[str, str, tuple[float, ...]]]

    def __str__(self) -> str:
        lines = [f"he_friendly: accuracy {self.accuracy_before:.4f} -> {self.accuracy_after:.4f} "
                 f"({len(self.replaced)} activation(s) replaced)"]
        lines += [f"  {name} ({kind}) -> polynomial {[round(c, 4) for c in coefficients]}"
                  for name, kind, coefficients in self.replaced]
        return "\n".join(lines)


def _tensors(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be a pair (inputs, labels) of arrays or tensors, got "
            f"{type(data).__name__}"
        ) from None
    inputs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(y)).long()
    if inputs.ndim < 2 or len(inputs) != len(labels) or labels.ndim != 1:
        raise ParameterError(
            f"{name}: inputs need shape (rows, *features) and labels (rows,) class indices, got "
            f"{tuple(inputs.shape)} and {tuple(labels.shape)}"
        )
    return inputs, labels


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def _fitted(kind: nn.Module, inputs: torch.Tensor, degree: int) -> list[float]:
    """Least-squares coefficients of ``kind`` on the values it met (5th to 95th percentile
    widened by half), so that fine-tuning starts from the activation's shape."""
    values = inputs.detach().flatten().double()
    low, high = (float(q) for q in torch.quantile(values[:100_000], torch.tensor(
        [0.05, 0.95], dtype=torch.float64)))
    half = max(high - low, 1e-3) / 2
    grid = torch.linspace(low - half, high + half, 512, dtype=torch.float64)
    with torch.no_grad():
        target = kind(grid.float()).double()
    fit = np.polynomial.polynomial.polyfit(grid.numpy(), target.numpy(), degree)
    return [float(c) for c in fit]


def _swap(model: nn.Module, x: torch.Tensor, degree: int) -> list[tuple[str, nn.Module]]:
    """Replace every activation of :data:`REPLACED` in ``model`` by a trainable polynomial
    fitted on what it receives from ``x``; returns ``(name, activation)`` replaced."""
    targets: list[tuple[str, nn.Module]] = [(name, layer) for name, layer in model.named_modules()
               if isinstance(layer, REPLACED)]
    seen: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(
        lambda layer, args, out, name=name: seen.setdefault(name, args[0].detach()))
        for name, layer in targets]
    model.eval()
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    for name, layer in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        coefficients = _fitted(layer, seen[name], degree) if name in seen else [0.0, 1.0]
        setattr(parent, child, _TrainablePolynomial(coefficients))
    return targets


def _freeze(model: nn.Module) -> list[tuple[str, tuple[float, ...]]]:
    """Turn the trained polynomials into fixed :class:`PolyActivation` modules."""
    fixed = []
    for name, layer in list(model.named_modules()):
        if isinstance(layer, _TrainablePolynomial):
            coefficients = tuple(float(c) for c in layer.coefficients.detach())
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, PolyActivation(coefficients))
            fixed.append((name, coefficients))
    return fixed


def he_friendly(
    model: nn.Module,
    data: Any,
    *,
    epochs: int = 5,
    degree: int = 2,
    lr: float = 3e-3,
    batch_size: int = 64,
    validation: Any = None,
    seed: int = 0,
) -> HEFriendly:
    """A copy of ``model`` whose ReLU/GELU/SiLU are polynomials of ``degree``, fine-tuned.

    Each activation becomes a polynomial fitted to it on the values it receives
    from ``data``; then the whole model is trained (Adam, cross-entropy) on
    ``data = (inputs, labels)`` for ``epochs`` and the polynomials are frozen as
    :class:`PolyActivation` modules. The result compiles for CKKS without any
    approximation (``pets.compile`` reports no approximations and no
    ``ApproximationWarning``). Accuracy is measured before and after, on
    ``validation`` if given, else on ``data``. ``model`` is left unchanged.

    >>> import torch, pets
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(200, 4), torch.randint(0, 2, (200,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> result = pets.nn.he_friendly(net, (x, y), epochs=1)
    >>> type(result.model[1]).__name__
    'PolyActivation'
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"he_friendly needs a torch nn.Module, got {type(model).__name__}")
    if not isinstance(degree, int) or not 1 <= degree <= 8 or isinstance(degree, bool):
        raise ParameterError(f"degree must be a whole number from 1 to 8, got {degree!r}; "
                             "2 (one level, like Square) is the usual choice")
    x, y = _tensors(data, "data")
    held_x, held_y = (x, y) if validation is None else _tensors(validation, "validation")
    before = _accuracy(model, held_x, held_y)
    friendly = copy.deepcopy(model)
    swapped = _swap(friendly, x, degree)
    if not swapped:
        raise ParameterError(
            "the model has no ReLU, GELU or SiLU module to replace (functional calls such as "
            "torch.relu inside forward are not seen); use nn.ReLU modules or pets.nn.Square"
        )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(friendly.parameters(), lr=lr)
    for _ in range(epochs):
        friendly.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(friendly(x[rows]), y[rows])
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(friendly.parameters(), 1.0)
            optimizer.step()
    fixed = dict(_freeze(friendly))
    after = _accuracy(friendly, held_x, held_y)
    replaced = [(name, type(layer).__name__, fixed[name]) for name, layer in swapped]
    return HEFriendly(friendly, before, after, replaced)
