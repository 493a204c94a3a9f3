"""Joint training on private data: a forward and backward pass written once on private tensors.

:func:`fit` trains a compiled :class:`~pets.compiler.exact_model.ExactModel`
whose layers form a chain (:mod:`pets.compiler.backprop` lists what trains:
Linear, Conv2d, pooling, BatchNorm with frozen statistics, ReLU, Sigmoid,
Tanh, Flatten, Dropout) with an optimiser of :mod:`pets.compiler.optimisers`
(SGD with momentum and weight decay, Adam). The same code trains on the plain
backend (the reference: the same steps as torch) and under MPC, where data,
labels, weights, gradients and optimiser state stay secret-shared. What it
costs is chosen here, not inherited:

* the softmax of the cross-entropy gradient runs its exponential and
  reciprocal over the *interval the logits are declared to lie in*
  (``logit_interval``), so it needs a few Newton steps, not CrypTen's generic 10;
* no loss value is computed unless asked (the gradient of softmax cross-entropy
  is ``softmax(z) - y``); ``reveal_loss=True`` computes it and opens one number
  per epoch;
* ReLU's and max-pooling's comparisons are made once in the forward pass and
  their masks reused for the backward pass.

>>> import numpy as np, torch, pets
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
>>> be = pets.backend("plain")
>>> model = pets.compile(net, backend=be, example_input=torch.zeros(4, 2))
>>> x = np.array([[2.0, 0.0], [0.0, 2.0]] * 8); y = np.eye(2)[[0, 1] * 8]
>>> history = model.fit(be.encrypt(x), be.encrypt(y), epochs=20, lr=0.5, batch_size=4)
>>> model.predict(x[:2]).argmax(axis=1).tolist()
[0, 1]
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pets import functions
from pets.compiler import private_sgd
from pets.compiler.backprop import Layer, Step, chain
from pets.compiler.optimisers import Optimiser, make_optimiser
from pets.errors import CompileError, ShapeMismatchError
from pets.tensor import PrivateTensor

if TYPE_CHECKING:
    from pets.compiler.exact_model import ExactModel
    from pets.dp.sgd import SGD

__all__ = ["LOSSES", "TrainingHistory", "fit", "to_torch"]

_log = logging.getLogger(__name__)
_RUNS = itertools.count()

#: the losses fit differentiates (cross-entropy on one-hot targets over a final softmax or
#: logits; mean squared error; binary cross-entropy on a final Sigmoid's probability)
LOSSES = ("cross_entropy", "mse", "bce")


@dataclass
class TrainingHistory:
    """What :func:`fit` did: steps, time per epoch, revealed losses and validation metrics."""

    epochs: int = 0
    steps: int = 0
    seconds: list[float] = field(default_factory=list)
    #: mean loss per epoch (``reveal_loss=True`` only; one opening per epoch)
    losses: list[float] = field(default_factory=list)
    #: the validation metric per epoch (``validation=`` only): accuracy, or MSE for loss="mse"
    validation: list[float] = field(default_factory=list)
    #: why training ended before ``epochs`` ("early stopping", "callback"), else ""
    stopped: str = ""
    #: DP-SGD (``dp=``): the noise multiplier the accountant chose, else ``None``
    noise_multiplier: float | None = None


def _check(model: ExactModel, x: Any, y: Any, loss: str, what: str = "") -> None:
    for tensor, name in ((x, f"{what}x"), (y, f"{what}y")):
        if not isinstance(tensor, PrivateTensor):
            raise TypeError(f"fit takes private tensors; encrypt {name} first (be.encrypt)")
        model.backend.check_same_keys(tensor.backend)
    if x.shape[1:] != model.input_shape or len(y) != len(x):
        raise ShapeMismatchError(
            f"fit needs {what}x of shape (N, *{model.input_shape}) and {what}y with as many "
            f"rows; got {x.shape} and {y.shape}"
        )
    if y.shape[1:] != model.output_shape:
        kind = {"cross_entropy": "one-hot labels", "bce": "0/1 labels"}.get(loss, "target values")
        raise ShapeMismatchError(
            f"y must have the model's output shape (N, *{model.output_shape}) ({kind}), got "
            f"{y.shape}"
        )


def fit(
    model: ExactModel,
    x: PrivateTensor,
    y: PrivateTensor,
    *,
    epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 32,
    loss: str = "cross_entropy",
    optimizer: str | Optimiser = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    logit_interval: tuple[float, float] = (-8.0, 8.0),
    subtract_max: bool = True,
    shuffle: bool = True,
    reveal_loss: bool = False,
    seed: int | None = None,
    progress: bool | Callable[[str], None] = False,
    callback: Callable[[TrainingHistory], Any] | None = None,
    validation: tuple[PrivateTensor, PrivateTensor] | None = None,
    patience: int | None = None,
    dp: SGD | None = None,
) -> TrainingHistory:
    """Mini-batch training on private ``x`` ``(N, *input_shape)`` and private targets ``y``.

    ``loss="cross_entropy"``: ``y`` is one-hot ``(N, classes)``; the softmax is
    computed for logits within ``logit_interval`` (beyond it the gradient is
    approximate). ``loss="mse"``: ``y`` holds target values of the output's
    shape. ``loss="bce"``: the model ends in Sigmoid, ``y`` holds 0/1 labels.
    ``optimizer`` is ``"sgd"`` (with ``momentum``, ``weight_decay``), ``"adam"``
    or an :class:`~pets.compiler.optimisers.Optimiser`. The batch order is a
    public permutation all parties agree on (``seed``, drawn by party 0 if not
    given); Dropout's masks come from the same seed.

    Each epoch can end with: ``reveal_loss`` (the mean training loss, one number
    opened to every party: a small leak), a ``progress`` line (``True`` prints
    it on party 0; a function gets it), the ``validation`` metric on private
    ``(x_val, y_val)`` (accuracy, or MSE for ``loss="mse"``: one number
    opened), ``callback(history)`` (returning ``True`` stops), and early
    stopping after ``patience`` epochs without a better validation metric.

    ``dp=pets.dp.SGD(epsilon=..., delta=..., max_grad_norm=...)`` trains with
    DP-SGD on the shares (:mod:`pets.compiler.private_sgd`): Poisson batches of
    expected size ``batch_size``, per-example clipping, jointly drawn noise, the
    whole spend charged to ``dp.budget`` first; the released weights are then
    differentially private. It refuses ``reveal_loss`` (an exact loss is no DP
    release).
    """
    backend = model.backend
    if not backend.capabilities.training:
        raise CompileError(f"the {backend.name} backend cannot train; use 'mpc' or 'plain'")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    if patience is not None and (validation is None or patience < 1):
        raise ValueError("patience (early stopping) needs validation=(x_val, y_val) and >= 1")
    if reveal_loss and loss == "cross_entropy" and not subtract_max:
        raise ValueError("reveal_loss with loss='cross_entropy' needs subtract_max=True")
    if dp is not None and reveal_loss:
        raise ValueError("reveal_loss opens an exact training loss, which DP-SGD does not "
                         "cover; leave it off with dp=, or use validation= on other rows")
    _check(model, x, y, loss)
    if validation is not None:
        _check(model, validation[0], validation[1], loss, "validation ")
    layers = chain(model, loss=loss)
    if dp is not None:
        private_sgd.check_layers(layers)
    _private_parameters(model, layers)
    options: dict[str, Any] = {}
    if momentum:
        options["momentum"] = momentum
    if weight_decay:
        options["weight_decay"] = weight_decay
    optimiser = make_optimiser(optimizer, lr=lr, **options)
    if seed is None:
        entropy = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        seed = backend.share_public(entropy % 2**63, src=0)
    rng = np.random.default_rng(seed)
    step = Step(np.random.default_rng([seed, 1]))  # dropout: its own stream of the seed
    history = TrainingHistory()
    count = len(x)
    chosen = None if dp is None else private_sgd.plan(
        dp, count=count, batch_size=batch_size, epochs=epochs,
        label=f"DP-SGD under MPC, {epochs} epoch(s)")
    history.noise_multiplier = None if chosen is None else chosen.noise_multiplier
    run = next(_RUNS)  # this fit's steps are keyed apart from every other fit's
    say = _progress(progress, backend.rank)
    best: float | None = None
    waited = 0
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(count) if shuffle else np.arange(count)
        batches = chosen.batches(rng, count) if chosen is not None else [
            np.sort(order[first : first + batch_size]) for first in range(0, count, batch_size)]
        total: PrivateTensor | None = None
        for index in batches:
            if not len(index):
                continue  # an empty Poisson sample (public): nothing to learn from
            with backend.repeated_step((run, len(index))):  # MPC: dealer answers at once
                xb, yb = x[index], y[index]
                out, cache = _forward(model, layers, xb, step)
                grad, batch_loss = _loss(out, yb, loss, logit_interval, subtract_max,
                                         reveal_loss, per_example=dp is not None)
                if batch_loss is not None:
                    total = batch_loss if total is None else total + batch_loss
                if dp is not None and chosen is not None:
                    sums = private_sgd.clipped_sum(model, layers, cache, grad, dp)
                    grads = private_sgd.noisy_mean(sums, dp, chosen, count)
                else:
                    grads = _backward(model, layers, cache, grad)
                optimiser.step(model.parameters, grads)
            history.steps += 1
        if total is not None:
            history.losses.append(float(backend.decrypt(total)) / count)
        history.seconds.append(time.perf_counter() - start)
        history.epochs += 1
        if validation is not None:
            history.validation.append(_validate(model, layers, validation, loss, step))
        say(_line(epoch, epochs, history, loss))
        if callback is not None and callback(history) is True:
            history.stopped = "callback"
            break
        if patience is not None:
            metric = history.validation[-1] * (-1.0 if loss == "mse" else 1.0)
            if best is None or metric > best:
                best, waited = metric, 0
            else:
                waited += 1
                if waited >= patience:
                    history.stopped = "early stopping"
                    break
    return history


def _progress(progress: bool | Callable[[str], None], rank: int) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress and rank == 0:
        return lambda line: print(line, flush=True)
    return lambda line: _log.info("%s", line)


def _line(epoch: int, epochs: int, history: TrainingHistory, loss: str) -> str:
    parts = [f"epoch {epoch + 1}/{epochs}: {history.seconds[-1]:.2f} s"]
    if history.losses:
        parts.append(f"loss {history.losses[-1]:.4f}")
    if history.validation:
        name = "validation MSE" if loss == "mse" else "validation accuracy"
        parts.append(f"{name} {history.validation[-1]:.4f}")
    return ", ".join(parts)


def _private_parameters(model: ExactModel, layers: list[Layer]) -> None:
    """Every trained parameter as a private tensor (party 0's initial values if plain)."""
    backend = model.backend
    for layer in layers:
        for name in layer.parameters:
            if isinstance(model.parameters[name], PrivateTensor):
                continue
            value = model.parameters[name]
            data = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
            model.parameters[name] = backend.encrypt(data if backend.rank == 0 else None, src=0)


def _forward(model: ExactModel, layers: list[Layer], x: PrivateTensor, step: Step
             ) -> tuple[PrivateTensor, list[Any]]:
    cache: list[Any] = []
    out = x
    for layer in layers:
        out, saved = layer.forward(out, model.parameters, step)
        cache.append(saved)
    return out, cache


def _backward(model: ExactModel, layers: list[Layer], cache: list[Any], grad: PrivateTensor
              ) -> dict[str, PrivateTensor]:
    first = next(i for i, layer in enumerate(layers) if layer.parameters)
    grads: dict[str, PrivateTensor] = {}
    for i in range(len(layers) - 1, first - 1, -1):
        result, own = layers[i].backward(grad, cache[i], model.parameters, need_input=i > first)
        grads.update(own)
        if result is not None:
            grad = result
    return grads


def _loss(out: PrivateTensor, target: PrivateTensor, loss: str, interval: tuple[float, float],
          subtract_max: bool, reveal: bool, *, per_example: bool = False
          ) -> tuple[PrivateTensor, PrivateTensor | None]:
    """The gradient of the mean loss by the model's output (``per_example``: of each row's
    own loss), and the batch's summed loss if ``reveal`` (still private)."""
    rows = len(out)
    per_row = out.size // rows
    count = per_row if per_example else out.size  # what the loss averages over
    if loss == "mse":
        error = out - target
        summed = error.square().sum() * (1.0 / per_row) if reveal else None
        return error * (2.0 / count), summed
    if loss == "bce":
        probability = out.sigmoid(interval=interval)
        summed = None
        if reveal:  # softplus(z) - y z, per element, averaged over the outputs of a row
            summed = (_softplus(out, interval) - out * target).sum() * (1.0 / per_row)
        return (probability - target) * (1.0 / count), summed
    probabilities = functions.softmax(out, -1, interval=interval, subtract_max=subtract_max)
    summed = _cross_entropy(out, target, interval) if reveal else None
    return (probabilities - target) * (1.0 if per_example else 1.0 / rows), summed


def _cross_entropy(out: PrivateTensor, target: PrivateTensor, interval: tuple[float, float]
                   ) -> PrivateTensor:
    """``sum(log sum exp(z - max) - y . (z - max))``: the logarithm runs on ``[1, classes]``."""
    from pets.compiler.approximate import fit_polynomial

    classes = out.shape[-1]
    top = functions.maximum(out, -1).reshape(len(out), 1)
    shifted = out - functions._broadcast(top, out.shape)
    width = interval[1] - interval[0]
    total = functions.exp(shifted, interval=(-width, 0.0)).sum(axis=-1)
    log_total = total.polyval(fit_polynomial(np.log, (1.0, float(max(classes, 2))), 8))
    return log_total.sum() - (shifted * target).sum()


def _softplus(z: PrivateTensor, interval: tuple[float, float]) -> PrivateTensor:
    from pets.compiler.approximate import fit_polynomial

    return z.polyval(fit_polynomial(lambda v: np.logaddexp(0.0, v), interval, 12))


def _validate(model: ExactModel, layers: list[Layer],
              validation: tuple[PrivateTensor, PrivateTensor], loss: str, step: Step) -> float:
    """Accuracy (or MSE) on the validation rows: computed on shares, one number opened."""
    x_val, y_val = validation
    step.training = False
    try:
        out, _ = _forward(model, layers, x_val, step)
    finally:
        step.training = True
    if loss == "mse":
        error = out - y_val
        return float(model.backend.decrypt(error.square().sum())) / error.size
    if loss == "bce":
        positive = out >= 0.0
        correct = positive * y_val + (1.0 - positive) * (1.0 - y_val)
        return float(model.backend.decrypt(correct.sum())) / correct.size
    top = functions.maximum(out, -1)
    true_logit = (out * y_val).sum(axis=-1)
    correct = true_logit >= top
    return float(model.backend.decrypt(correct.sum())) / len(out)


def to_torch(model: ExactModel, *, to: int | None = None) -> torch.nn.Module | None:
    """A copy of the compiled torch module holding the model's current parameters.

    Private parameters are revealed (to party ``to`` only, if given; the others
    get ``None``).
    """
    module = model.program.module
    if module is None:
        raise CompileError("to_torch needs the model compiled from an nn.Module, not an "
                           "ExportedProgram")
    values: dict[str, np.ndarray] = {}
    for name, value in model.parameters.items():
        if isinstance(value, PrivateTensor):
            revealed = model.backend.decrypt(value, to=to)
            if revealed is None:
                continue
            values[model.program.targets[name]] = np.asarray(revealed)
        elif isinstance(value, torch.Tensor):
            values[model.program.targets[name]] = value.numpy()
    if to is not None and model.backend.rank != to:
        return None
    result = copy.deepcopy(module)
    state = result.state_dict()
    for target, array in values.items():
        if target in state:
            state[target] = torch.as_tensor(array, dtype=state[target].dtype).reshape(
                state[target].shape)
    result.load_state_dict(state)
    return result


