"""DP-SGD on secret shares: per-example clipping and jointly drawn noise inside ``fit``.

For each Linear layer the gradient of example ``i`` is the outer product of
its output gradient ``d_i`` and its input ``a_i``, so its squared norm is
``|d_i|^2 (|a_i|^2 + 1)`` (the 1 for the bias) without ever forming it; the
example's norm adds these up over the layers. Then, all on shares:

* ``r_i = 1 / sqrt(norm_i^2)`` (Newton over the settings' ``interval``),
  ``f_i = min(1, C r_i)`` (one comparison per example);
* the clipped sum of a layer is ``(f * d)^T a``: one matrix product, as in
  training without DP;
* Gaussian noise of standard deviation ``noise_multiplier * C`` is added by
  :func:`pets.dp.joint_noise` (each party its share; no party knows it) and the
  sum divided by the expected batch size, as Opacus does.

Batches are Poisson samples (each row with probability ``sample_rate``) from
the public seed, as the accountant assumes. Models of Linear layers and
element-wise activations (Flatten, Dropout) train this way; a layer whose
per-example gradient is not offered is refused with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pets import functions
from pets.compiler.backprop import Layer
from pets.errors import ModelIssue, UnsupportedModelError
from pets.tensor import PrivateTensor, concat

if TYPE_CHECKING:
    from pets.compiler.exact_model import ExactModel
    from pets.dp.sgd import SGD

__all__ = ["Plan", "check_layers", "clipped_sum", "noisy_mean", "plan"]

_PER_EXAMPLE = {"linear", "relu", "sigmoid", "tanh", "square", "reshape", "dropout"}


@dataclass(frozen=True)
class Plan:
    """What the accountant chose for this training."""

    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int

    def batches(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        """One epoch of Poisson samples (public: drawn from the shared seed)."""
        return [np.flatnonzero(rng.random(count) < self.sample_rate)
                for _ in range(self.steps_per_epoch)]


def plan(settings: SGD, *, count: int, batch_size: int, epochs: int, label: str) -> Plan:
    """The noise multiplier for ``settings`` (sample rate 1 / batches per epoch, as
    make_private); charges the party's budget for every step before any runs."""
    steps_per_epoch = max(1, math.ceil(count / batch_size))
    sample_rate = 1.0 / steps_per_epoch
    multiplier = settings.noise_multiplier(sample_rate=sample_rate, epochs=epochs)
    settings.charge(noise_multiplier=multiplier, sample_rate=sample_rate,
                    steps=epochs * steps_per_epoch, label=label)
    return Plan(multiplier, sample_rate, steps_per_epoch)


def check_layers(layers: list[Layer]) -> None:
    """Refuse, with the reason, layers whose per-example gradient is not offered."""
    issues = [
        ModelIssue(layer.kind, f"{layer.kind} has no per-example gradient under DP-SGD in "
                   "pets.fit.", "train Linear layers with element-wise activations under dp=, "
                   "or train this model without dp")
        for layer in layers if layer.kind not in _PER_EXAMPLE
    ]
    if issues:
        raise UnsupportedModelError(issues)


def clipped_sum(model: ExactModel, layers: list[Layer], cache: list[Any],
                output_grad: PrivateTensor, settings: SGD) -> dict[str, PrivateTensor]:
    """Per-example gradients clipped to ``max_grad_norm`` and summed, per parameter.

    ``output_grad`` holds each example's gradient of its own loss by the output.
    """
    params = model.parameters
    pieces: list[tuple[Layer, PrivateTensor, PrivateTensor]] = []  # (layer, d, a)
    grad = output_grad
    first = next(i for i, layer in enumerate(layers) if layer.parameters)
    for i in range(len(layers) - 1, first - 1, -1):
        layer = layers[i]
        if layer.kind == "linear":
            pieces.append((layer, grad, cache[i]))
            if i > first:
                grad = grad @ params[layer.weight]  # type: ignore[index]
        else:
            result, _ = layer.backward(grad, cache[i], params, need_input=True)
            assert result is not None
            grad = result
    rows = len(output_grad)
    outs = concat([d.square().sum(axis=1).reshape(1, rows) for _, d, _ in pieces], axis=0)
    ins = concat([a.square().sum(axis=1).reshape(1, rows) + (1.0 if layer.bias else 0.0)
                  for layer, _, a in pieces], axis=0)
    norms = (outs * ins).sum(axis=0)  # squared per-example norms, (rows,)
    inverse = functions.inv_sqrt(norms, interval=settings.interval)
    shortfall = 1.0 - inverse * settings.max_grad_norm
    factor = 1.0 - shortfall.relu()  # min(1, C / norm)
    sums: dict[str, PrivateTensor] = {}
    for layer, d, a in pieces:
        scaled = d * functions._broadcast(factor.reshape(rows, 1), d.shape)
        sums[layer.weight] = scaled.T @ a  # type: ignore[index]
        if layer.bias is not None:
            sums[layer.bias] = scaled.sum(axis=0)
    return sums


def noisy_mean(sums: dict[str, PrivateTensor], settings: SGD, chosen: Plan, count: int
               ) -> dict[str, PrivateTensor]:
    """The clipped sums plus jointly drawn Gaussian noise, over the expected batch size."""
    from pets.dp import GaussianMechanism, joint_noise

    names = list(sums)
    flat = concat([sums[n].reshape(-1) for n in names], axis=0)
    mechanism = GaussianMechanism.from_noise_multiplier(
        chosen.noise_multiplier, delta=settings.delta, sensitivity=settings.max_grad_norm)
    noisy = joint_noise(flat, mechanism, colluding=settings.colluding)
    noisy = noisy * (1.0 / (chosen.sample_rate * count))
    result, offset = {}, 0
    for name in names:
        size = sums[name].size
        result[name] = noisy[offset : offset + size].reshape(*sums[name].shape)
        offset += size
    return result

