"""Optimisers for :func:`pets.compiler.training.fit`: SGD (momentum, weight decay) and Adam.

Each takes the steps ``torch.optim`` takes, written on private tensors: on the
plain backend the weights equal torch's (tested to 1e-6); under MPC the
parameters, gradients and optimiser state stay secret-shared.

All parameters are updated as one flat vector (one concatenation), so Adam's
square root and division run once per step over every parameter, not once
per tensor. Under MPC they are approximations over an interval, as in
:mod:`pets.functions`: ``interval`` bounds ``sqrt(v_hat) + eps``; a
denominator below its low end is treated as that low end (so it acts like a
larger ``eps``). Adam keeps ``v / (1 - beta2)`` rather than ``v``: with
``beta2 = 0.999`` the second moment of a gradient of 0.01 is 1e-7, below the
resolution of 16-bit fixed point, while the scaled value is 1e-4.

>>> Adam(lr=0.01).describe()
'Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pets import functions
from pets.tensor import PrivateTensor, concat

__all__ = ["SGD", "Adam", "Optimiser", "make_optimiser"]


class Optimiser(ABC):
    """Updates private parameters from their private gradients, one step at a time."""

    lr: float

    @abstractmethod
    def update(self, flat: PrivateTensor, grad: PrivateTensor) -> PrivateTensor:
        """The new flat parameter vector from the old one and its gradient."""

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"

    def step(self, params: dict[str, Any], grads: dict[str, PrivateTensor]) -> None:
        """Apply one step to ``params`` (names in ``grads``), in place."""
        names = list(grads)
        shapes = [grads[n].shape for n in names]
        flat_grad = _flat([grads[n] for n in names])
        flat = _flat([params[n] for n in names])
        new = self.update(flat, flat_grad)
        offset = 0
        for name, shape in zip(names, shapes, strict=True):
            size = grads[name].size
            params[name] = new[offset : offset + size].reshape(*shape)
            offset += size


def _flat(tensors: list[PrivateTensor]) -> PrivateTensor:
    flat = [t.reshape(-1) for t in tensors]
    return flat[0] if len(flat) == 1 else concat(flat, axis=0)


@dataclass
class SGD(Optimiser):
    """``torch.optim.SGD``: ``momentum``, ``dampening``, ``nesterov`` and ``weight_decay``."""

    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    _buffer: PrivateTensor | None = field(default=None, repr=False)

    def update(self, flat: PrivateTensor, grad: PrivateTensor) -> PrivateTensor:
        if self.weight_decay:
            grad = grad + flat * self.weight_decay
        if self.momentum:
            if self._buffer is None:
                self._buffer = grad
            else:
                self._buffer = self._buffer * self.momentum + grad * (1.0 - self.dampening)
            grad = grad + self._buffer * self.momentum if self.nesterov else self._buffer
        return flat - grad * self.lr


@dataclass
class Adam(Optimiser):
    """``torch.optim.Adam`` (no amsgrad); ``interval`` bounds ``sqrt(v_hat) + eps`` under MPC."""

    lr: float = 0.001
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    interval: tuple[float, float] = field(default=(1e-2, 1e2), repr=False)
    _moment: PrivateTensor | None = field(default=None, repr=False)
    _scaled_square: PrivateTensor | None = field(default=None, repr=False)
    _steps: int = field(default=0, repr=False)

    def describe(self) -> str:
        return (f"Adam(lr={self.lr!r}, betas={self.betas!r}, eps={self.eps!r}, "
                f"weight_decay={self.weight_decay!r})")

    def update(self, flat: PrivateTensor, grad: PrivateTensor) -> PrivateTensor:
        beta1, beta2 = self.betas
        if self.weight_decay:
            grad = grad + flat * self.weight_decay
        self._steps += 1
        square = grad.square()
        if self._moment is None or self._scaled_square is None:
            self._moment = grad * (1.0 - beta1)
            self._scaled_square = square
        else:
            self._moment = self._moment * beta1 + grad * (1.0 - beta1)
            self._scaled_square = self._scaled_square * beta2 + square
        # v_hat = v / (1 - beta2^t) with v = (1 - beta2) * scaled
        v_hat = self._scaled_square * ((1.0 - beta2) / (1.0 - beta2**self._steps))
        low, high = self.interval
        root = v_hat * functions.inv_sqrt(v_hat, interval=(low * low, high * high))
        inverse = functions.reciprocal(root + self.eps, interval=(low, high))
        step_size = self.lr / (1.0 - beta1**self._steps)
        return flat - self._moment * inverse * step_size


_OPTIMISERS: dict[str, type[Optimiser]] = {"sgd": SGD, "adam": Adam}


def make_optimiser(optimizer: str | Optimiser, *, lr: float, **options: Any) -> Optimiser:
    """An optimiser by name (``"sgd"``, ``"adam"``) with ``lr`` and options, or the one given."""
    if isinstance(optimizer, Optimiser):
        return optimizer
    if optimizer not in _OPTIMISERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMISERS)} or a "
                         f"pets.compiler.optimisers.Optimiser, got {optimizer!r}")
    chosen: Any = _OPTIMISERS[optimizer]
    return chosen(lr=lr, **options)  # type: ignore[no-any-return]
