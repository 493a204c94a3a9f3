"""Joint training on private data: SGD written once on private-tensor operations.

:func:`fit` trains a compiled :class:`~pets.compiler.exact_model.ExactModel`
whose layers form a chain of ``Linear`` layers and element-wise activations
(ReLU, Sigmoid, Tanh, square; Flatten and Dropout pass through). Forward and
backward passes are the layers' own formulas on
:class:`~pets.tensor.PrivateTensor`, so the same code trains on the plain
backend (the reference) and under MPC, where data, labels and weights stay
secret-shared throughout. What it costs is chosen here, not inherited:

* the softmax of the cross-entropy gradient runs its exponential and
  reciprocal over the *interval the logits are declared to lie in*
  (``logit_interval``), so it needs a few Newton steps, not CrypTen's generic 10;
* no loss value is computed (the gradient of softmax cross-entropy is
  ``softmax(z) - y``; a logarithm would cost rounds and reveal nothing needed);
* ReLU's comparison is made once in the forward pass and its mask reused
  for the backward pass.

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
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pets import functions
from pets.errors import CompileError, ModelIssue, ShapeMismatchError, UnsupportedModelError
from pets.tensor import PrivateTensor

if TYPE_CHECKING:
    from pets.compiler.exact_model import ExactModel

__all__ = ["TrainingHistory", "fit", "to_torch", "trainable_layers"]

_log = logging.getLogger(__name__)

_ACTIVATIONS = {"relu", "sigmoid", "tanh", "square"}
_PASS = {"dropout", "clone", "contiguous", "alias", "detach", "_to_copy"}
_RESHAPES = {"flatten", "view", "reshape", "_unsafe_view"}


@dataclass
class TrainingHistory:
    """What :func:`fit` did: steps, time per epoch, and losses if they were revealed."""

    epochs: int = 0
    steps: int = 0
    seconds: list[float] = field(default_factory=list)
    #: mean squared error per epoch (``loss="mse"`` with ``reveal_loss=True`` only)
    losses: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Layer:
    kind: str  # "linear", an activation name, "reshape"
    weight: str | None = None
    bias: str | None = None


def trainable_layers(model: ExactModel) -> list[_Layer]:
    """The model as a chain of trainable layers; every other structure is refused at once."""
    program = model.program
    private = program.private_nodes()
    layers: list[_Layer] = []
    issues: list[ModelIssue] = []
    previous = None
    for node in program.graph.nodes:
        if node not in private or node.op != "call_function":
            continue
        name = str(node.target).split(".")[1] if "." in str(node.target) else str(node.target)
        data_inputs = [a for a in node.all_input_nodes if a in private]
        if previous is not None and data_inputs != [previous]:
            issues.append(ModelIssue(node.name, "branches or joins the data path.",
                                     "fit trains a chain of layers; use nn.Sequential"))
        previous = node
        if name == "linear":
            weight = node.args[1].name
            bias = node.args[2].name if len(node.args) > 2 and node.args[2] is not None else None
            layers.append(_Layer("linear", weight, bias))
        elif name in _ACTIVATIONS:
            layers.append(_Layer(name))
        elif name in _RESHAPES:
            layers.append(_Layer("reshape"))
        elif name in _PASS:
            continue
        elif name in ("softmax", "_softmax") and node is _last(program, private):
            continue  # the loss applies softmax itself
        else:
            issues.append(ModelIssue(
                node.name, f"{name} cannot be trained by pets.fit yet.",
                "train models of Linear layers and ReLU/Sigmoid/Tanh activations (Flatten and "
                "Dropout pass through), or train in the clear and compile the result",
            ))
    if issues:
        raise UnsupportedModelError(issues)
    if not any(layer.kind == "linear" for layer in layers):
        raise CompileError("the model has no Linear layer to train")
    return layers


def _last(program: Any, private: set[Any]) -> Any:
    nodes = [n for n in program.graph.nodes if n in private and n.op == "call_function"]
    return nodes[-1] if nodes else None


def _private_parameters(model: ExactModel, layers: list[_Layer]) -> None:
    """Every trained parameter as a private tensor (party 0's initial values if plain)."""
    backend = model.backend
    for layer in layers:
        for name in (layer.weight, layer.bias):
            if name is None or isinstance(model.parameters[name], PrivateTensor):
                continue
            value = model.parameters[name]
            data = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
            model.parameters[name] = backend.encrypt(data if backend.rank == 0 else None, src=0)


def fit(
    model: ExactModel,
    x: PrivateTensor,
    y: PrivateTensor,
    *,
    epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 32,
    loss: str = "cross_entropy",
    logit_interval: tuple[float, float] = (-8.0, 8.0),
    subtract_max: bool = True,
    shuffle: bool = True,
    reveal_loss: bool = False,
    seed: int | None = None,
) -> TrainingHistory:
    """Mini-batch SGD on private ``x`` ``(N, *input_shape)`` and private targets ``y``.

    ``loss="cross_entropy"``: ``y`` is one-hot ``(N, classes)``; the softmax is
    computed for logits within ``logit_interval`` (beyond it the gradient is
    approximate). ``loss="mse"``: ``y`` holds target values of the output's shape.
    The batch order is a public permutation all parties agree on (``seed``,
    drawn by party 0 if not given). ``reveal_loss`` (MSE only) reveals the mean
    loss of each epoch to every party: one number per epoch, a small leak.
    """
    if not model.backend.capabilities.training:
        raise CompileError(f"the {model.backend.name} backend cannot train; use 'mpc' or 'plain'")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    if reveal_loss and loss != "mse":
        raise ValueError("reveal_loss is available for loss='mse' only")
    for tensor, what in ((x, "x"), (y, "y")):
        if not isinstance(tensor, PrivateTensor):
            raise TypeError(f"fit takes private tensors; encrypt {what} first (be.encrypt)")
        model.backend.check_same_keys(tensor.backend)
    if x.shape[1:] != model.input_shape or len(y) != len(x):
        raise ShapeMismatchError(
            f"fit needs x of shape (N, *{model.input_shape}) and y with as many rows; got "
            f"{x.shape} and {y.shape}"
        )
    if y.shape[1:] != model.output_shape:
        raise ShapeMismatchError(
            f"y must have the model's output shape (N, *{model.output_shape}) "
            f"({'one-hot labels' if loss == 'cross_entropy' else 'target values'}), got {y.shape}"
        )
    layers = trainable_layers(model)
    _private_parameters(model, layers)
    backend = model.backend
    if seed is None:
        entropy = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        seed = backend.share_public(entropy % 2**63, src=0)
    rng = np.random.default_rng(seed)
    history = TrainingHistory()
    count = len(x)
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(count) if shuffle else np.arange(count)
        squared = None
        for first in range(0, count, batch_size):
            index = np.sort(order[first : first + batch_size])
            xb, yb = x[index], y[index]
            out, cache = _forward(model, layers, xb)
            if loss == "cross_entropy":
                probabilities = functions.softmax(out, -1, interval=logit_interval,
                                                  subtract_max=subtract_max)
                grad = (probabilities - yb) * (1.0 / len(index))
            else:
                error = out - yb
                grad = error * (2.0 / error.size)
                if reveal_loss:
                    batch_loss = error.square().sum()
                    squared = batch_loss if squared is None else squared + batch_loss
            _backward(model, layers, cache, grad, lr)
            history.steps += 1
        if squared is not None:
            total = backend.decrypt(squared)
            history.losses.append(float(total) / (count * int(np.prod(model.output_shape))))
        history.seconds.append(time.perf_counter() - start)
        history.epochs += 1
        _log.info("epoch %d/%d: %.2f s%s", epoch + 1, epochs, history.seconds[-1],
                  f", loss {history.losses[-1]:.4f}" if history.losses else "")
    return history


def _forward(model: ExactModel, layers: list[_Layer], x: PrivateTensor
             ) -> tuple[PrivateTensor, list[Any]]:
    params = model.parameters
    cache: list[Any] = []
    out = x
    for layer in layers:
        if layer.kind == "linear":
            cache.append(out)
            assert layer.weight is not None
            out = out @ params[layer.weight].T
            if layer.bias is not None:
                out = out + functions._broadcast(params[layer.bias].reshape(1, -1), out.shape)
        elif layer.kind == "relu":
            mask = out >= 0.0
            cache.append(mask)
            out = out * mask
        elif layer.kind == "sigmoid":
            out = out.sigmoid()
            cache.append(out)
        elif layer.kind == "tanh":
            out = out.tanh()
            cache.append(out)
        elif layer.kind == "square":
            cache.append(out)
            out = out.square()
        else:  # reshape: flatten each sample
            cache.append(out.shape)
            out = out.reshape(len(out), -1)
    return out, cache


def _backward(model: ExactModel, layers: list[_Layer], cache: list[Any], grad: PrivateTensor,
              lr: float) -> None:
    params = model.parameters
    first_linear = next(i for i, layer in enumerate(layers) if layer.kind == "linear")
    for i in range(len(layers) - 1, -1, -1):
        layer, saved = layers[i], cache[i]
        if layer.kind == "linear":
            assert layer.weight is not None
            weight = params[layer.weight]
            d_weight = grad.T @ saved
            d_bias = grad.sum(axis=0) if layer.bias is not None else None
            if i > first_linear:
                grad = grad @ weight
            params[layer.weight] = weight - d_weight * lr
            if layer.bias is not None and d_bias is not None:
                params[layer.bias] = params[layer.bias] - d_bias * lr
        elif layer.kind == "relu":
            grad = grad * saved
        elif layer.kind == "sigmoid":
            grad = grad * (saved * (1.0 - saved))
        elif layer.kind == "tanh":
            grad = grad * (1.0 - saved.square())
        elif layer.kind == "square":
            grad = grad * saved * 2.0
        else:
            grad = grad.reshape(saved)
        if i < first_linear:
            break


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

