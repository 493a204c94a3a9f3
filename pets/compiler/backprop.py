"""The layers :func:`pets.compiler.training.fit` trains: a forward and a backward pass each.

Every layer is written once on :class:`~pets.tensor.PrivateTensor`, so the
same code runs on the plain backend (the reference, equal to torch's
gradients) and under MPC. Each is chosen to be cheap on secret shares:

* ``Linear`` and ``Conv2d``: the weight gradient is one private product
  (a matmul; a convolution of the input by the output gradient), the input
  gradient another (a strided convolution's input gradient is not offered);
* ReLU and max-pooling compare once, in the forward pass, and the backward
  pass reuses that 0/1 mask (no second comparison);
* Sigmoid and Tanh differentiate from their own output (``s (1 - s)``,
  ``1 - t^2``): no exponential again;
* average pooling and Flatten move shares around: no communication;
* Dropout's mask comes from the parties' shared seed: it is public (it depends
  on no data), so applying it is a product by a plain 0/1 array;
* BatchNorm trains with *frozen statistics*: the running mean and variance
  the model was compiled with stay fixed (an affine map per channel), its scale
  and shift are trained. Batch statistics would need an inverse square root on
  shares every step; this is the eval-mode layer torch's ``model.eval()`` runs.

:func:`chain` turns a compiled model into these layers and refuses, with the
reason, every layer that has no backward pass here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pets import functions
from pets.errors import CompileError, ModelIssue, UnsupportedModelError
from pets.tensor import PrivateTensor, concat

if TYPE_CHECKING:
    from pets.compiler.exact_model import ExactModel

__all__ = ["Layer", "Step", "chain"]

_ACTIVATIONS = ("relu", "sigmoid", "tanh", "square")
_PASS = {"clone", "contiguous", "alias", "detach", "_to_copy"}
_RESHAPES = {"flatten", "view", "reshape", "_unsafe_view"}
_TRAINABLE = ("Linear, Conv2d (stride 1 where it is not the first layer), AvgPool2d and "
              "MaxPool2d (stride = kernel, no padding), BatchNorm2d (frozen statistics), "
              "ReLU, Sigmoid, Tanh, Flatten and Dropout")


@dataclass
class Step:
    """What one training step shares between its layers: the public dropout generator."""

    rng: np.random.Generator
    training: bool = True


@dataclass
class Layer:
    """One layer of the chain; ``weight``/``bias`` name its parameters in ``model.parameters``."""

    kind: str
    weight: str | None = None
    bias: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def parameters(self) -> list[str]:
        return [name for name in (self.weight, self.bias) if name is not None]

    # ---- forward: (output, what backward needs) ---------------------------------------

    def forward(self, x: PrivateTensor, params: dict[str, Any], step: Step
                ) -> tuple[PrivateTensor, Any]:
        kind = self.kind
        if kind == "linear":
            out = x @ params[self.weight].T  # type: ignore[index]
            return _add_bias(out, params, self.bias, 2), x
        if kind == "conv2d":
            out = _conv(x, params[self.weight], stride=self.options["stride"],  # type: ignore[index]
                        padding=self.options["padding"])
            return _add_bias(out, params, self.bias, 4), x
        if kind == "relu":
            mask = x >= 0.0
            return x * mask, mask
        if kind == "sigmoid":
            out = x.sigmoid()
            return out, out
        if kind == "tanh":
            out = x.tanh()
            return out, out
        if kind == "square":
            return x.square(), x
        if kind == "reshape":
            return x.reshape(len(x), *self.options["shape"]), x.shape
        if kind == "dropout":
            p = self.options["p"]
            if not step.training or p == 0:
                return x, None
            keep = (step.rng.random(x.shape) >= p) / (1.0 - p)
            return x * keep, keep
        if kind == "avg_pool2d":
            return _pool_windows(x, self.options["kernel"]).mean(axis=(-3, -1)), x.shape
        if kind == "max_pool2d":
            windows = _window_stack(x, self.options["kernel"])
            best, mask = _argmax(windows)
            return best, (mask, x.shape)
        if kind == "batch_norm":
            scale, shift = self.options["scale"], self.options["shift"]
            normal = x * scale + shift  # (x - mean) / sqrt(var + eps), plain per-channel maps
            out = normal * _channel(params[self.weight], x.shape) if self.weight else normal
            return _add_bias(out, params, self.bias, 4), normal
        raise CompileError(f"unknown layer kind {kind!r}")  # pragma: no cover (chain builds kinds)

    # ---- backward: (gradient of the input or None, gradients of the parameters) -----------

    def backward(self, grad: PrivateTensor, saved: Any, params: dict[str, Any], need_input: bool
                 ) -> tuple[PrivateTensor | None, dict[str, PrivateTensor]]:
        kind = self.kind
        grads: dict[str, PrivateTensor] = {}
        if kind == "linear":
            weight = params[self.weight]  # type: ignore[index]
            grads[self.weight] = grad.T @ saved  # type: ignore[index]
            if self.bias is not None:
                grads[self.bias] = grad.sum(axis=0)
            return (grad @ weight if need_input else None), grads
        if kind == "conv2d":
            weight = params[self.weight]  # type: ignore[index]
            grads[self.weight] = _conv_weight_grad(saved, grad, weight.shape,  # type: ignore[index]
                                                   self.options["stride"], self.options["padding"])
            if self.bias is not None:
                grads[self.bias] = grad.sum(axis=(0, 2, 3))
            return (_conv_input_grad(grad, weight, self.options["padding"]) if need_input
                    else None), grads
        if kind == "relu":
            return grad * saved, grads
        if kind == "sigmoid":
            return grad * (saved * (1.0 - saved)), grads
        if kind == "tanh":
            return grad * (1.0 - saved.square()), grads
        if kind == "square":
            return grad * saved * 2.0, grads
        if kind == "reshape":
            return grad.reshape(saved), grads
        if kind == "dropout":
            return (grad if saved is None else grad * saved), grads
        if kind == "avg_pool2d":
            kh, kw = self.options["kernel"]
            spread = _unpool(grad, grad, self.options["kernel"], saved) if need_input else None
            return (None if spread is None else spread * (1.0 / (kh * kw))), grads
        if kind == "max_pool2d":
            mask, shape = saved
            routed = mask * functions._broadcast(grad.reshape((1, *grad.shape)), mask.shape)
            return (_unstack(routed, self.options["kernel"], shape) if need_input else None), grads
        if kind == "batch_norm":
            if self.weight is not None:
                grads[self.weight] = (grad * saved).sum(axis=(0, 2, 3))
            if self.bias is not None:
                grads[self.bias] = grad.sum(axis=(0, 2, 3))
            if not need_input:
                return None, grads
            through = grad * _channel(params[self.weight], grad.shape) if self.weight else grad
            return through * self.options["scale"], grads
        raise CompileError(f"unknown layer kind {kind!r}")  # pragma: no cover


# ---- helpers on private tensors ------------------------------------------------------------


def _channel(value: PrivateTensor, shape: tuple[int, ...]) -> PrivateTensor:
    """A private per-channel vector repeated over ``(B, C, H, W)`` (local)."""
    return functions._broadcast(value.reshape(1, -1, 1, 1), shape)


def _add_bias(out: PrivateTensor, params: dict[str, Any], bias: str | None, ndim: int
              ) -> PrivateTensor:
    if bias is None:
        return out
    shape = (1, -1) if ndim == 2 else (1, -1, 1, 1)
    return out + functions._broadcast(params[bias].reshape(*shape), out.shape)


def _conv(x: PrivateTensor, kernel: PrivateTensor, *, stride: tuple[int, int],
          padding: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> PrivateTensor:
    """``conv2d(x, kernel)`` for a private kernel (no groups)."""
    out_channels, _, kh, kw = kernel.shape
    batch, _, height, width = x.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    native = x.backend.conv2d(x.data, kernel.data, stride=stride, padding=padding,
                              dilation=dilation, groups=1)
    return x._wrap(native, (batch, out_channels, out_h, out_w))


def _conv_weight_grad(x: PrivateTensor, grad: PrivateTensor, shape: tuple[int, ...],
                      stride: tuple[int, int], padding: tuple[int, int]) -> PrivateTensor:
    """``dL/dW`` of a convolution: the input convolved by the output gradient, batch as channels."""
    kh, kw = shape[2], shape[3]
    full = _conv(x.transpose(1, 0, 2, 3), grad.transpose(1, 0, 2, 3), stride=(1, 1),
                 padding=padding, dilation=stride)  # (C, O, >= kh, >= kw)
    if full.shape[2:] != (kh, kw):
        full = full[:, :, :kh, :kw]
    return full.transpose(1, 0, 2, 3)


def _conv_input_grad(grad: PrivateTensor, weight: PrivateTensor, padding: tuple[int, int]
                     ) -> PrivateTensor:
    """``dL/dx`` of a stride-1 convolution: the gradient convolved by the flipped kernel."""
    kh, kw = weight.shape[2], weight.shape[3]
    flipped = weight[:, :, np.arange(kh - 1, -1, -1)][:, :, :, np.arange(kw - 1, -1, -1)]
    return _conv(grad, flipped.transpose(1, 0, 2, 3), stride=(1, 1),
                 padding=(kh - 1 - padding[0], kw - 1 - padding[1]))


def _pool_windows(x: PrivateTensor, kernel: tuple[int, int]) -> PrivateTensor:
    """``(B, C, oh, kh, ow, kw)``: non-overlapping windows (rows and columns beyond dropped)."""
    kh, kw = kernel
    batch, channels, height, width = x.shape
    oh, ow = height // kh, width // kw
    if (oh * kh, ow * kw) != (height, width):
        x = x[:, :, : oh * kh, : ow * kw]
    return x.reshape(batch, channels, oh, kh, ow, kw)


def _window_stack(x: PrivateTensor, kernel: tuple[int, int]) -> PrivateTensor:
    """``(kh * kw, B, C, oh, ow)``: each window position's values on axis 0."""
    windows = _pool_windows(x, kernel).transpose(3, 5, 0, 1, 2, 4)
    return windows.reshape(kernel[0] * kernel[1], *windows.shape[2:])


def _argmax(stack: PrivateTensor) -> tuple[PrivateTensor, PrivateTensor]:
    """Maximum over axis 0 and a one-hot mask of where it is (first of ties), by a tournament:
    each level compares all its pairs at once, and the masks multiply level by level, all
    positions in one product per level."""
    count = stack.shape[0]
    values = [stack[i] for i in range(count)]
    groups = [[i] for i in range(count)]  # which original positions each value stands for
    factors: list[list[PrivateTensor]] = [[] for _ in range(count)]
    while len(values) > 1:
        pairs = len(values) // 2
        a = concat([values[2 * i].reshape((1, *values[0].shape)) for i in range(pairs)], axis=0)
        b = concat([values[2 * i + 1].reshape((1, *values[0].shape)) for i in range(pairs)],
                   axis=0)
        right_wins = b > a  # one comparison for the whole level
        best = a + right_wins * (b - a)
        new_values, new_groups = [], []
        for i in range(pairs):
            wins = right_wins[i]
            for position in groups[2 * i]:
                factors[position].append(1.0 - wins)
            for position in groups[2 * i + 1]:
                factors[position].append(wins)
            new_values.append(best[i])
            new_groups.append(groups[2 * i] + groups[2 * i + 1])
        if len(values) % 2:
            new_values.append(values[-1])
            new_groups.append(groups[-1])
        values, groups = new_values, new_groups
    masks = [f[0] if f else stack[i] * 0.0 + 1.0 for i, f in enumerate(factors)]
    for level in range(1, max(len(f) for f in factors)):
        positions = [i for i, f in enumerate(factors) if len(f) > level]
        left = concat([masks[i].reshape((1, *masks[i].shape)) for i in positions], axis=0)
        right = concat([factors[i][level].reshape((1, *masks[i].shape)) for i in positions],
                       axis=0)
        product = left * right
        for j, position in enumerate(positions):
            masks[position] = product[j]
    return values[0], concat([m.reshape((1, *m.shape)) for m in masks], axis=0)


def _unstack(routed: PrivateTensor, kernel: tuple[int, int], shape: tuple[int, ...]
             ) -> PrivateTensor:
    """Inverse of :func:`_window_stack`: ``(kh*kw, B, C, oh, ow)`` back to ``shape``."""
    kh, kw = kernel
    _, batch, channels, oh, ow = routed.shape
    grid = routed.reshape(kh, kw, batch, channels, oh, ow).transpose(2, 3, 4, 0, 5, 1)
    return _pad_to(grid.reshape(batch, channels, oh * kh, ow * kw), shape)


def _unpool(grad: PrivateTensor, like: PrivateTensor, kernel: tuple[int, int],
            shape: tuple[int, ...]) -> PrivateTensor:
    """Each output gradient copied over its window: ``(B, C, oh, ow)`` to ``shape``."""
    kh, kw = kernel
    batch, channels, oh, ow = grad.shape
    grown = functions._broadcast(grad.reshape(batch, channels, oh, 1, ow, 1),
                                 (batch, channels, oh, kh, ow, kw))
    return _pad_to(grown.reshape(batch, channels, oh * kh, ow * kw), shape)


def _pad_to(x: PrivateTensor, shape: tuple[int, ...]) -> PrivateTensor:
    """Zero rows and columns appended up to ``shape`` (what pooling dropped gets no gradient)."""
    height, width = shape[2], shape[3]
    if x.shape[3] < width:
        zeros = x[:, :, :, :1] * 0.0
        x = concat([x] + [zeros] * (width - x.shape[3]), axis=3)
    if x.shape[2] < height:
        zeros = x[:, :, :1, :] * 0.0
        x = concat([x] + [zeros] * (height - x.shape[2]), axis=2)
    return x


# ---- the model as a chain of layers -----------------------------------------------------------


def _name(node: Any) -> str:
    target = str(node.target)
    return target.split(".")[1] if "." in target else target


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = [int(v) for v in value]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _arg(node: Any, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _constant(program: Any, node: Any) -> np.ndarray:
    value = program.parameters[node.name]
    return value.detach().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _layer(program: Any, node: Any, name: str, first: bool) -> tuple[Layer | None, str | None]:
    """The layer a graph node is, or ``None`` and why it cannot be trained."""
    if name == "linear":
        bias = _arg(node, 2, "bias", None)
        return Layer("linear", node.args[1].name, bias.name if bias is not None else None), None
    if name == "conv2d":
        stride, padding = _pair(_arg(node, 3, "stride", 1)), _arg(node, 4, "padding", 0)
        dilation, groups = _pair(_arg(node, 5, "dilation", 1)), int(_arg(node, 6, "groups", 1))
        if isinstance(padding, str) or dilation != (1, 1) or groups != 1:
            return None, "conv2d with dilation, groups or padding by name has no backward pass"
        padding = _pair(padding)
        if not first and stride != (1, 1):
            return None, ("a strided conv2d after the first layer has no input gradient here; "
                          "use stride 1 and a pooling layer")
        kernel = tuple(node.args[1].meta["val"].shape[2:]) if "val" in node.args[1].meta else None
        if kernel is not None and (padding[0] >= kernel[0] or padding[1] >= kernel[1]):
            return None, "conv2d with padding of the kernel's size or more has no backward pass"
        bias = _arg(node, 2, "bias", None)
        return Layer("conv2d", node.args[1].name, bias.name if bias is not None else None,
                     {"stride": stride, "padding": padding}), None
    if name in ("avg_pool2d", "max_pool2d", "max_pool2d_with_indices"):
        kernel = _pair(node.args[1])
        stride = _arg(node, 2, "stride", None)
        stride = kernel if stride in (None, [], ()) else _pair(stride)
        padding = _pair(_arg(node, 3, "padding", 0))
        if stride != kernel or padding != (0, 0) or _arg(node, 4, "ceil_mode" if name ==
                                                         "avg_pool2d" else "dilation", False
                                                         ) not in (False, 1, [1, 1], (1, 1)):
            return None, (f"{name} with stride other than its kernel, padding, ceil_mode or "
                          "dilation has no backward pass")
        kind = "avg_pool2d" if name == "avg_pool2d" else "max_pool2d"
        return Layer(kind, options={"kernel": kernel}), None
    if name == "batch_norm":
        weight, bias = node.args[1], node.args[2]
        mean, var = _constant(program, node.args[3]), _constant(program, node.args[4])
        eps = float(_arg(node, 7, "eps", 1e-5))
        scale = 1.0 / np.sqrt(var + eps)
        return Layer("batch_norm", weight.name if weight is not None else None,
                     bias.name if bias is not None else None,
                     {"scale": scale.reshape(1, -1, 1, 1),
                      "shift": (-mean * scale).reshape(1, -1, 1, 1)}), None
    if name in _ACTIVATIONS:
        return Layer(name), None
    if name == "dropout":
        return Layer("dropout", options={"p": float(node.args[1])}), None
    if name in _RESHAPES:
        return Layer("reshape", options={"shape": tuple(node.meta["val"].shape[1:])}), None
    return None, f"{name} has no backward pass in pets.fit."


def chain(model: ExactModel, *, loss: str) -> list[Layer]:
    """The model as a chain of trainable layers; every layer that cannot train is refused.

    The model's last Softmax is left to ``loss="cross_entropy"``, its last Sigmoid
    to ``loss="bce"`` (each loss differentiates through it itself).
    """
    program = model.program
    private = program.private_nodes()
    nodes = [n for n in program.graph.nodes if n in private and n.op == "call_function"]
    layers: list[Layer] = []
    issues: list[ModelIssue] = []
    previous = None
    for node in nodes:
        name = _name(node)
        if name == "getitem" and previous is not None and _name(previous) in (
                "max_pool2d_with_indices",):
            previous = node
            continue
        data_inputs = [a for a in node.all_input_nodes if a in private]
        if previous is not None and data_inputs != [previous]:
            issues.append(ModelIssue(node.name, "branches or joins the data path.",
                                     "fit trains a chain of layers; use nn.Sequential"))
        previous = node
        if name in _PASS:
            continue
        last = node is nodes[-1]
        if last and name in ("softmax", "_softmax") and loss == "cross_entropy":
            continue
        if last and name == "sigmoid" and loss == "bce":
            continue
        layer, why = _layer(program, node, name, first=not layers)
        if layer is None:
            issues.append(ModelIssue(node.name, why or "",
                                     f"fit trains {_TRAINABLE}; or train in the clear and "
                                     "compile the result"))
        else:
            layers.append(layer)
    if loss == "bce" and (not nodes or _name(nodes[-1]) != "sigmoid"):
        raise CompileError("loss='bce' trains a model whose last layer is Sigmoid (binary "
                           "cross-entropy on its probability); add nn.Sigmoid() at the end")
    if issues:
        raise UnsupportedModelError(issues)
    if not any(layer.parameters for layer in layers):
        raise CompileError("the model has no layer with parameters to train")
    return layers
