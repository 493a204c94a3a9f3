"""What each ATen operation computes on private tensors, for backends that compare.

:mod:`pets.compiler.exact` runs a model's exported graph node by node; a node
with a private operand calls the implementation registered here for its ATen
operator (convolution, max-pool, softmax, layer norm ... written once on
:class:`~pets.tensor.PrivateTensor` and :mod:`pets.functions`). A node on
plain values only (a parameter reshaped, a constant) runs in torch.

Each implementation takes a :class:`Context` first: it says where calibrated
value ranges come from (the intervals of exp, reciprocal and the like).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from pets import functions
from pets.errors import ShapeMismatchError
from pets.tensor import PrivateTensor, concat

__all__ = ["Context", "implementation", "implements", "supported_operators"]

aten = torch.ops.aten
Interval = tuple[float, float]


class Context(Protocol):
    """What an implementation may ask of the run it is part of."""

    def interval(self, key: str, tensor: PrivateTensor) -> Interval:
        """The calibrated range of ``tensor`` at this node (``key`` tells several apart)."""
        ...


Implementation = Callable[..., Any]
_IMPLEMENTATIONS: dict[Any, Implementation] = {}


def implements(*targets: Any) -> Callable[[Implementation], Implementation]:
    """Register an implementation for ATen operators (their overload packets)."""

    def decorate(function: Implementation) -> Implementation:
        for target in targets:
            _IMPLEMENTATIONS[getattr(target, "overloadpacket", target)] = function
        return function

    return decorate


def implementation(target: Any) -> Implementation | None:
    """The implementation registered for what a graph node calls, or ``None``."""
    try:
        return _IMPLEMENTATIONS.get(getattr(target, "overloadpacket", target))
    except TypeError:
        return None


def supported_operators() -> list[str]:
    """Names of the ATen operators that run on private tensors (for error messages)."""
    return sorted({str(getattr(t, "__name__", t)).split(".")[-1] for t in _IMPLEMENTATIONS})


# ---- helpers -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value


def _aligned(x: Any, y: Any) -> tuple[PrivateTensor, Any]:
    """``(x, y)`` with a private one first and two private ones broadcast to one shape."""
    if not isinstance(x, PrivateTensor):
        x, y = y, x
    if not isinstance(y, PrivateTensor):
        return x, _plain(y)
    shape = tuple(np.broadcast_shapes(x.shape, y.shape))

    def grown(t: PrivateTensor) -> PrivateTensor:
        padded = t.reshape((1,) * (len(shape) - t.ndim) + t.shape)
        return functions._broadcast(padded, shape)

    return grown(x), grown(y)


def _broadcast_add(x: Any, y: Any) -> Any:
    """``x + y`` where either may be private and shapes broadcast (numpy rules)."""
    a, b = _aligned(x, y)
    return a + b


def _broadcast_mul(x: Any, y: Any) -> Any:
    """``x * y`` where either may be private and shapes broadcast (numpy rules)."""
    a, b = _aligned(x, y)
    return a * b


def _channel(value: Any, ndim: int) -> Any:
    """A per-channel vector shaped to broadcast over ``(B, C, *spatial)``."""
    shape = (-1,) + (1,) * (ndim - 2)
    return value.reshape(shape) if isinstance(value, PrivateTensor) else np.reshape(
        _plain(value), shape)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


# ---- linear operations ---------------------------------------------------------------------


@implements(aten.linear)
def _linear(ctx: Context, x: PrivateTensor, weight: Any, bias: Any = None) -> Any:
    w = weight.T if isinstance(weight, PrivateTensor) else _plain(weight).T
    if not isinstance(x, PrivateTensor):  # plain input, private weights
        raise ShapeMismatchError("a linear layer needs private input data")
    out = x @ w
    return out if bias is None else _broadcast_add(out, bias)


@implements(aten.matmul, aten.mm)
def _matmul(ctx: Context, x: Any, y: Any) -> Any:
    if not isinstance(x, PrivateTensor):
        raise ShapeMismatchError(
            "plain @ private mixes samples; write it as private @ plain (x @ W.T)"
        )
    return x @ (y if isinstance(y, PrivateTensor) else _plain(y))


@implements(aten.addmm)
def _addmm(ctx: Context, bias: Any, x: Any, y: Any, beta: float = 1, alpha: float = 1) -> Any:
    product = _matmul(ctx, x, y)
    return _broadcast_add(product * alpha if alpha != 1 else product,
                          bias * beta if beta != 1 else bias)


@implements(aten.conv2d)
def _conv2d(ctx: Context, x: PrivateTensor, weight: Any, bias: Any = None, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1) -> PrivateTensor:
    if isinstance(padding, str):
        raise ShapeMismatchError(f"conv2d padding={padding!r}: give padding as numbers")
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    kernel = weight.data if isinstance(weight, PrivateTensor) else _plain(weight)
    out_channels, _, kh, kw = weight.shape
    batch, _, height, width = x.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    native = x.backend.conv2d(x.data, kernel, stride=stride, padding=padding,
                              dilation=dilation, groups=int(groups))
    out = x._wrap(native, (batch, out_channels, out_h, out_w))
    return out if bias is None else _broadcast_add(out, _channel(bias, 4))


def _windows(x: PrivateTensor, kernel: tuple[int, int], stride: tuple[int, int]) -> PrivateTensor:
    """Every window position's values stacked on a new axis 0: ``(kh*kw, B, C, oh, ow)``."""
    height, width = x.shape[-2:]
    out_h = (height - kernel[0]) // stride[0] + 1
    out_w = (width - kernel[1]) // stride[1] + 1
    parts = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            part = x[..., rows, cols]
            parts.append(part.reshape((1, *part.shape)))
    return concat(parts, axis=0)


def _pool_args(kernel_size: Any, stride: Any, padding: Any) -> tuple[tuple[int, int], ...]:
    kernel = _pair(kernel_size)
    strides = kernel if stride in (None, [], ()) else _pair(stride)
    if _pair(padding) != (0, 0):
        raise ShapeMismatchError(
            "pooling with padding is not supported on private data; pad the input with a "
            "ZeroPad2d layer of a value that cannot win, or use padding=0"
        )
    return kernel, strides


@implements(aten.max_pool2d, aten.max_pool2d_with_indices)
def _max_pool2d(ctx: Context, x: PrivateTensor, kernel_size: Any, stride: Any = None,
                padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False) -> PrivateTensor:
    if _pair(dilation) != (1, 1) or ceil_mode:
        raise ShapeMismatchError("max_pool2d with dilation or ceil_mode is not supported")
    kernel, strides = _pool_args(kernel_size, stride, padding)
    return functions.maximum(_windows(x, kernel, strides), 0)


@implements(aten.avg_pool2d)
def _avg_pool2d(ctx: Context, x: PrivateTensor, kernel_size: Any, stride: Any = None,
                padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                divisor_override: int | None = None) -> PrivateTensor:
    kernel, strides = _pool_args(kernel_size, stride, padding)
    total = _windows(x, kernel, strides).sum(axis=0)
    return total * (1.0 / (divisor_override or kernel[0] * kernel[1]))


@implements(aten.adaptive_avg_pool2d)
def _adaptive_avg_pool2d(ctx: Context, x: PrivateTensor, output_size: Any) -> PrivateTensor:
    out_h, out_w = _pair(output_size)
    height, width = x.shape[-2:]
    if height % out_h or width % out_w:
        raise ShapeMismatchError(
            f"adaptive_avg_pool2d from {height}x{width} to {out_h}x{out_w} needs whole windows"
        )
    kernel = (height // out_h, width // out_w)
    return _avg_pool2d(ctx, x, kernel, kernel)


@implements(aten.batch_norm)
def _batch_norm(ctx: Context, x: PrivateTensor, weight: Any, bias: Any, mean: Any, var: Any,
                training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                *rest: Any) -> Any:
    return _batch_norm_eval(x, weight, bias, mean, var, float(eps))


@implements(aten._native_batch_norm_legit_no_training)
def _native_batch_norm(ctx: Context, x: PrivateTensor, weight: Any, bias: Any, mean: Any,
                       var: Any, momentum: float = 0.1, eps: float = 1e-5) -> Any:
    return (_batch_norm_eval(x, weight, bias, mean, var, float(eps)), None, None)


def _batch_norm_eval(x: PrivateTensor, weight: Any, bias: Any, mean: Any, var: Any,
                     eps: float) -> PrivateTensor:
    """Eval-mode batch norm: a plain per-channel scale and shift."""
    if any(isinstance(v, PrivateTensor) for v in (weight, bias, mean, var)):
        raise ShapeMismatchError(
            "batch_norm with secret statistics: fold it into the layer before it first"
        )
    w = np.ones_like(_plain(mean)) if weight is None else _plain(weight)
    b = np.zeros_like(_plain(mean)) if bias is None else _plain(bias)
    scale = w / np.sqrt(_plain(var) + eps)
    shift = b - _plain(mean) * scale
    return x * _channel(scale, x.ndim) + _channel(shift, x.ndim)


def _normalise(ctx: Context, x: PrivateTensor, axes: tuple[int, ...], eps: float,
               key: str) -> PrivateTensor:
    centred = x - functions._broadcast(x.mean(axes, keepdims=True), x.shape)
    variance = centred.square().mean(axes, keepdims=True) + eps
    lo, hi = ctx.interval(key, variance)
    scale = functions.inv_sqrt(variance, interval=(max(lo, eps), max(hi, 2 * eps)))
    return centred * functions._broadcast(scale, x.shape)


@implements(aten.layer_norm)
def _layer_norm(ctx: Context, x: PrivateTensor, normalized_shape: Sequence[int],
                weight: Any = None, bias: Any = None, eps: float = 1e-5, *rest: Any) -> Any:
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    out = _normalise(ctx, x, axes, float(eps), "variance")
    if weight is not None:
        out = _broadcast_mul(out, weight)
    if bias is not None:
        out = _broadcast_add(out, bias)
    return out


@implements(aten.group_norm)
def _group_norm(ctx: Context, x: PrivateTensor, groups: int, weight: Any = None,
                bias: Any = None, eps: float = 1e-5, *rest: Any) -> Any:
    batch = x.shape[0]
    grouped = x.reshape(batch, int(groups), -1)
    out = _normalise(ctx, grouped, (2,), float(eps), "variance").reshape(x.shape)
    if weight is not None:
        out = _broadcast_mul(out, _channel(weight, x.ndim))
    if bias is not None:
        out = _broadcast_add(out, _channel(bias, x.ndim))
    return out


# ---- element-wise ---------------------------------------------------------------------------


@implements(aten.add)
def _add(ctx: Context, x: Any, y: Any, alpha: float = 1) -> Any:
    return _broadcast_add(x, y * alpha if alpha != 1 else y)


@implements(aten.sub)
def _sub(ctx: Context, x: Any, y: Any, alpha: float = 1) -> Any:
    negated = -(y * alpha if alpha != 1 else y)
    return _broadcast_add(x, negated)


@implements(aten.rsub)
def _rsub(ctx: Context, x: Any, y: Any, alpha: float = 1) -> Any:
    return _broadcast_add(-(x * alpha if alpha != 1 else x), y)


@implements(aten.mul)
def _mul(ctx: Context, x: Any, y: Any) -> Any:
    return _broadcast_mul(x, y)


@implements(aten.div)
def _div(ctx: Context, x: Any, y: Any, rounding_mode: str | None = None) -> Any:
    if isinstance(y, PrivateTensor) or rounding_mode is not None:
        raise ShapeMismatchError(
            "division by private values (or rounding division) is not an operator on private "
            "data; divide by plain constants, or multiply by a reciprocal"
        )
    return _broadcast_mul(x, 1.0 / np.asarray(_plain(y), dtype=np.float64))


@implements(aten.neg)
def _neg(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return -x


@implements(aten.square)
def _square(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.square()


@implements(aten.pow)
def _pow(ctx: Context, x: PrivateTensor, exponent: Any) -> PrivateTensor:
    value = float(_plain(exponent))
    if value != int(value) or value < 1:
        raise ShapeMismatchError(
            f"pow({value}) on private data: only integer powers >= 1 are supported"
        )
    return x ** int(value)


@implements(aten.relu)
def _relu(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.relu()


def _clip(x: PrivateTensor, low: float | None, high: float | None) -> PrivateTensor:
    """``min(max(x, low), high)`` with one ReLU per bound."""
    out = x
    if low is not None:
        out = (out - float(low)).relu() + float(low)
    if high is not None:
        out = float(high) - (float(high) - out).relu()
    return out


@implements(aten.hardtanh)
def _hardtanh(ctx: Context, x: PrivateTensor, low: float = -1.0,
              high: float = 1.0) -> PrivateTensor:
    return _clip(x, low, high)


@implements(aten.relu6)
def _relu6(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return _clip(x, 0.0, 6.0)


@implements(aten.clamp)
def _clamp(ctx: Context, x: PrivateTensor, low: float | None = None,
           high: float | None = None) -> PrivateTensor:
    return _clip(x, low, high)


@implements(aten.leaky_relu)
def _leaky_relu(ctx: Context, x: PrivateTensor, slope: float = 0.01) -> PrivateTensor:
    return x * slope + x.relu() * (1.0 - slope)


@implements(aten.sigmoid)
def _sigmoid(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.sigmoid(interval=ctx.interval("input", x))


@implements(aten.tanh)
def _tanh(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.tanh(interval=ctx.interval("input", x))


@implements(aten.silu)
def _silu(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x * x.sigmoid(interval=ctx.interval("input", x))


@implements(aten.gelu)
def _gelu(ctx: Context, x: PrivateTensor, approximate: str = "none") -> PrivateTensor:
    inner = (x + x ** 3 * 0.044715) * math.sqrt(2.0 / math.pi)
    interval = ctx.interval("inner", inner)  # calibrated even where gelu is exact (plain)
    native = x.backend.function("gelu", x.data, approximate=approximate)
    if native is not None:
        return x._wrap(native)
    return x * 0.5 + x * inner.tanh(interval=interval) * 0.5


@implements(aten.elu)
def _elu(ctx: Context, x: PrivateTensor, alpha: float = 1.0, *rest: Any) -> PrivateTensor:
    positive = x.relu()
    negative = x - positive
    lo, _ = ctx.interval("input", x)
    return positive + (negative.exp(interval=(min(lo, -1e-3), 0.0)) - 1.0) * float(alpha)


@implements(aten.exp)
def _exp(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.exp(interval=ctx.interval("input", x))


@implements(aten.softmax, aten._softmax)
def _softmax(ctx: Context, x: PrivateTensor, dim: int, *rest: Any) -> PrivateTensor:
    return x.softmax(int(dim), interval=ctx.interval("input", x))


@implements(aten.amax)
def _amax(ctx: Context, x: PrivateTensor, dims: Sequence[int] = (), keepdim: bool = False) -> Any:
    axes = sorted((int(d) % x.ndim for d in dims), reverse=True) or list(
        reversed(range(x.ndim)))
    out = x
    for axis in axes:
        out = functions.maximum(out, axis)
        if keepdim:
            out = out.reshape([*out.shape[:axis], 1, *out.shape[axis:]])
    return out


# ---- reductions and shapes -------------------------------------------------------------------


@implements(aten.sum)
def _sum(ctx: Context, x: PrivateTensor, dims: Any = None, keepdim: bool = False,
         **kwargs: Any) -> PrivateTensor:
    axes = None if dims in (None, [], ()) else tuple(int(d) for d in dims)
    return x.sum(axes, keepdims=bool(keepdim))


@implements(aten.mean)
def _mean(ctx: Context, x: PrivateTensor, dims: Any = None, keepdim: bool = False,
          **kwargs: Any) -> PrivateTensor:
    axes = None if dims in (None, [], ()) else tuple(int(d) for d in dims)
    return x.mean(axes, keepdims=bool(keepdim))


@implements(aten.view, aten.reshape, aten._unsafe_view)
def _reshape(ctx: Context, x: PrivateTensor, shape: Sequence[int]) -> PrivateTensor:
    return x.reshape(tuple(int(n) for n in shape))


@implements(aten.flatten)
def _flatten(ctx: Context, x: PrivateTensor, start: int = 0, end: int = -1) -> PrivateTensor:
    start, end = start % max(x.ndim, 1), end % max(x.ndim, 1)
    middle = int(np.prod(x.shape[start : end + 1]))
    return x.reshape((*x.shape[:start], middle, *x.shape[end + 1 :]))


@implements(aten.unflatten)
def _unflatten(ctx: Context, x: PrivateTensor, dim: int, sizes: Sequence[int]) -> PrivateTensor:
    dim = dim % x.ndim
    return x.reshape((*x.shape[:dim], *sizes, *x.shape[dim + 1 :]))


@implements(aten.permute)
def _permute(ctx: Context, x: PrivateTensor, dims: Sequence[int]) -> PrivateTensor:
    return x.transpose(*dims)


@implements(aten.transpose)
def _transpose(ctx: Context, x: PrivateTensor, a: int, b: int) -> PrivateTensor:
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return x.transpose(*order)


@implements(aten.t)
def _t(ctx: Context, x: PrivateTensor) -> PrivateTensor:
    return x.T


@implements(aten.unsqueeze)
def _unsqueeze(ctx: Context, x: PrivateTensor, dim: int) -> PrivateTensor:
    dim = dim % (x.ndim + 1)
    return x.reshape((*x.shape[:dim], 1, *x.shape[dim:]))


@implements(aten.squeeze)
def _squeeze(ctx: Context, x: PrivateTensor, dims: Any = None) -> PrivateTensor:
    listed = range(x.ndim) if dims is None else ([dims] if isinstance(dims, int) else dims)
    drop = {int(d) % x.ndim for d in listed if x.shape[int(d) % x.ndim] == 1}
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in drop))


@implements(aten.select)
def _select(ctx: Context, x: PrivateTensor, dim: int, index: int) -> PrivateTensor:
    key: list[Any] = [slice(None)] * x.ndim
    key[dim % x.ndim] = int(index)
    return x[tuple(key)]


@implements(aten.slice)
def _slice(ctx: Context, x: PrivateTensor, dim: int = 0, start: int | None = None,
           end: int | None = None, step: int = 1) -> PrivateTensor:
    key: list[Any] = [slice(None)] * x.ndim
    key[dim % x.ndim] = slice(start, None if end is not None and end >= 2**62 else end, step)
    return x[tuple(key)]


@implements(aten.cat, aten.concat)
def _cat(ctx: Context, tensors: Sequence[Any], dim: int = 0) -> PrivateTensor:
    if not all(isinstance(t, PrivateTensor) for t in tensors):
        raise ShapeMismatchError("cat of private and plain tensors: encrypt the plain part too")
    return concat(list(tensors), axis=int(dim))


@implements(aten.expand)
def _expand(ctx: Context, x: PrivateTensor, sizes: Sequence[int], **kwargs: Any) -> Any:
    shape = tuple(x.shape[i - (len(sizes) - x.ndim)] if n == -1 else int(n)
                  for i, n in enumerate(sizes))
    reshaped = x.reshape((1,) * (len(shape) - x.ndim) + x.shape)
    return functions._broadcast(reshaped, shape)


@implements(aten.dropout, aten.clone, aten.contiguous, aten.alias, aten.detach,
            aten._to_copy, aten.lift_fresh_copy)
def _identity(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x
