"""Convolutions as convolutions: a run of convolutions and pools becomes a sparse matrix.

A linear region made of 2-D convolutions, average pools, (eval-mode) batch
norms, dropouts and a final flatten is translation-equivariant: every output
reads a window of ``K`` input rows and columns, ``S`` apart per output
(composed over the region: ``K' = K + (k - 1) S``, ``P' = P + p S``,
``S' = S s``). Such a region is probed with *combs* of impulses, one input
channel and one residue ``(y mod K, x mod K)`` at a time: every output's
window holds exactly one impulse of each comb, so ``C_in K^2`` probes give
every non-zero weight (a dense probe needs one per input feature and stores
``inputs x outputs`` numbers: 400 MB for a 3x32x32 -> 16x32x32 convolution).
The result is checked against torch on the example input.

Its output also gets a *geometry*: where its rows and columns sit on the canvas
of the model's input image (:func:`pets.slots.canvas_placement`), so that a
per-sample packing can keep strided outputs in place.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from pets.compiler.graph import TracedModel
from pets.slots import SparseMatrix, canvas_placement

__all__ = ["Geometry", "Window", "probe_convolution", "region_window"]

aten = torch.ops.aten

#: regions whose dense matrix would hold more numbers than this must be convolutions
DENSE_LIMIT = 1 << 25


@dataclass(frozen=True)
class Window:
    """Per spatial axis: output ``o`` reads inputs ``o*stride - padding`` .. ``+ kernel - 1``."""

    kernel: int = 1
    stride: int = 1
    padding: int = 0

    def then(self, other: Window) -> Window:
        """This window followed by ``other`` (applied to this one's output)."""
        return Window(
            self.kernel + (other.kernel - 1) * self.stride,
            self.stride * other.stride,
            self.padding + other.padding * self.stride,
        )


@dataclass(frozen=True)
class Geometry:
    """A ``(channels, height, width)`` value on the canvas of the model's input image."""

    channels: int
    height: int
    width: int
    spacing: int
    canvas: tuple[int, int]

    def placement(self) -> np.ndarray | None:
        return canvas_placement(channels=self.channels, height=self.height, width=self.width,
                                spacing=self.spacing, canvas=self.canvas)


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
                     nn.BatchNorm2d)
_IDENTITY_FUNCTIONS = {F.dropout, torch.clone, aten.dropout, aten.clone, aten.alias,
                       aten._to_copy, aten.contiguous, aten.detach, operator.getitem,
                       aten._native_batch_norm_legit_no_training, aten.batch_norm, F.batch_norm}
_IDENTITY_METHODS = {"contiguous", "clone", "float", "double", "to", "type", "detach"}
_FLATTEN = {torch.flatten, torch.reshape, aten.view, aten.reshape, aten.flatten,
            aten._unsafe_view}


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _arg(node: fx.Node, index: int, name: str, default: Any, values: dict[fx.Node, Any]) -> Any:
    value = node.args[index] if len(node.args) > index else node.kwargs.get(name, default)
    return values.get(value, default) if isinstance(value, fx.Node) else value


def _conv_window(kernel: tuple[int, int], stride: Any, padding: Any, dilation: Any
                 ) -> tuple[Window, Window] | None:
    dil = _pair(dilation)
    span = [dil[a] * (kernel[a] - 1) + 1 for a in (0, 1)]
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same" and _pair(stride) == (1, 1):
            padding = tuple((s - 1) // 2 for s in span)
        else:
            return None
    st, pad = _pair(stride), _pair(padding)
    return Window(span[0], st[0], pad[0]), Window(span[1], st[1], pad[1])


def _pool_window(kernel: Any, stride: Any, padding: Any, ceil_mode: Any,
                 count_include_pad: Any) -> tuple[Window, Window] | None:
    k = _pair(kernel)
    st = _pair(stride) if stride not in (None, [], ()) else k
    pad = _pair(padding)
    if ceil_mode or (any(pad) and not count_include_pad):
        return None  # windows of varying size: not one kernel
    return Window(k[0], st[0], pad[0]), Window(k[1], st[1], pad[1])


def node_window(traced: TracedModel, node: fx.Node) -> tuple[Window, Window] | str | None:
    """The node's window, ``"identity"``, ``"flatten"``, or ``None`` (not convolutional)."""
    values = traced.values
    module = traced.module_of(node)
    if module is not None:
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                return None
            kernel = (int(module.kernel_size[0]), int(module.kernel_size[1]))
            return _conv_window(kernel, module.stride, module.padding, module.dilation)
        if isinstance(module, nn.AvgPool2d):
            return _pool_window(module.kernel_size, module.stride, module.padding,
                                module.ceil_mode, module.count_include_pad)
        if isinstance(module, _IDENTITY_MODULES):
            return "identity"
        if isinstance(module, nn.Flatten):
            return "flatten"
        return None
    target = node.target
    if node.op == "call_method":
        if target in _IDENTITY_METHODS:
            return "identity"
        return "flatten" if target in ("view", "reshape", "flatten") else None
    if node.op != "call_function":
        return None
    key = target.overloadpacket if isinstance(target, torch._ops.OpOverload) else target
    if key in (F.conv2d, torch.conv2d, aten.conv2d, aten.convolution):
        source = node.args[1] if len(node.args) > 1 else None
        weight = values.get(source) if isinstance(source, fx.Node) else None
        if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
            return None
        if key is aten.convolution and (_arg(node, 6, "transposed", False, values)):
            return None
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        return _conv_window(kernel, _arg(node, 3, "stride", 1, values),
                            _arg(node, 4, "padding", 0, values),
                            _arg(node, 5, "dilation", 1, values))
    if key in (F.avg_pool2d, aten.avg_pool2d):
        return _pool_window(_arg(node, 1, "kernel_size", 1, values),
                            _arg(node, 2, "stride", None, values),
                            _arg(node, 3, "padding", 0, values),
                            _arg(node, 4, "ceil_mode", False, values),
                            _arg(node, 5, "count_include_pad", True, values))
    if key in _IDENTITY_FUNCTIONS:
        return "identity"
    if key in _FLATTEN:
        return "flatten"
    return None


def region_window(traced: TracedModel, inputs: list[fx.Node], region: list[fx.Node],
                  output: fx.Node) -> tuple[Window, Window, tuple[int, int, int]] | None:
    """The composed window of a convolutional region and its spatial output shape
    ``(channels, height, width)``, or ``None`` if the region is not one."""
    if len(inputs) != 1 or traced.values[inputs[0]].ndim != 4:
        return None
    wy, wx = Window(), Window()
    spatial = tuple(traced.values[inputs[0]].shape[1:])
    flattened = False
    for node in region:
        value = traced.values[node]
        if not isinstance(value, torch.Tensor):
            if isinstance(value, tuple) and node_window(traced, node) == "identity":
                continue  # a batch norm's (output, mean, var) tuple
            return None
        kind = node_window(traced, node)
        if kind is None or (flattened and kind != "identity"):
            return None
        if kind == "flatten":
            if value.ndim != 2 and value.shape[1:] != torch.Size(spatial):
                return None
            flattened = value.ndim == 2
            continue
        if value.ndim != 4:
            return None
        if kind != "identity":
            assert isinstance(kind, tuple)
            wy, wx = wy.then(kind[0]), wx.then(kind[1])
        spatial = tuple(value.shape[1:])
    if traced.values[output].reshape(traced.batch, -1).shape[1] != int(np.prod(spatial)):
        return None
    return wy, wx, (int(spatial[0]), int(spatial[1]), int(spatial[2]))


def probe_convolution(
    traced: TracedModel, input_node: fx.Node, region: list[fx.Node], output: fx.Node,
    window: tuple[Window, Window],
) -> tuple[SparseMatrix, np.ndarray] | None:
    """The region's matrix (sparse) and bias, probed with impulse combs; ``None`` if the
    responses contradict the window (then the caller probes densely)."""
    runner = traced.runner
    constants = traced.constants()
    channels, height, width = (int(n) for n in traced.values[input_node].shape[1:])
    wy, wx = window
    fixed = traced.batch if traced.source == "export" else None

    def run(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        size = fixed or count
        padded = np.zeros((size, channels, height, width))
        padded[:count] = batch
        env: dict[fx.Node, Any] = dict(constants)
        env[input_node] = torch.from_numpy(padded)
        runner.run_nodes(region, env)
        out = env[output].detach().reshape(size, -1).numpy()[:count]
        return np.asarray(out, dtype=np.float64)

    bias = run(np.zeros((1, channels, height, width)))[0]
    outputs = len(bias)
    c, ys, xs = np.meshgrid(np.arange(channels), np.arange(wy.kernel), np.arange(wx.kernel),
                            indexing="ij")
    combs = np.stack([c.ravel(), ys.ravel(), xs.ravel()], axis=1)
    rows, cols, vals = [], [], []
    spatial_out = _output_spatial(traced, region, output, outputs)
    if spatial_out is None:
        return None
    _c_out, h_out, w_out = spatial_out
    j = np.arange(outputs)
    yo, xo = (j // w_out) % h_out, j % w_out
    start_y, start_x = yo * wy.stride - wy.padding, xo * wx.stride - wx.padding
    step = fixed or 64
    for first in range(0, len(combs), step):
        chunk = combs[first : first + step]
        batch = np.zeros((len(chunk), channels, height, width))
        for b, (ci, oy, ox) in enumerate(chunk):
            batch[b, ci, oy::wy.kernel, ox::wx.kernel] = 1.0
        responses = run(batch) - bias
        for (ci, oy, ox), response in zip(chunk, responses, strict=True):
            hit = np.abs(response) > 0.0
            y = start_y + (oy - start_y) % wy.kernel
            x = start_x + (ox - start_x) % wx.kernel
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            if np.any(hit & ~inside):
                return None  # an output answered an impulse outside its window
            keep = hit & inside
            rows.append(ci * height * width + y[keep] * width + x[keep])
            cols.append(j[keep])
            vals.append(response[keep])
    matrix = SparseMatrix(
        np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
        np.concatenate(vals), (channels * height * width, outputs),
    )
    for array in (matrix.rows, matrix.cols, matrix.values):
        array.flags.writeable = False
    return matrix, bias


def _output_spatial(traced: TracedModel, region: list[fx.Node], output: fx.Node,
                    outputs: int) -> tuple[int, int, int] | None:
    for node in reversed([*region, output]):
        value = traced.values.get(node)
        if isinstance(value, torch.Tensor) and value.ndim == 4:
            shape = tuple(int(n) for n in value.shape[1:])
            return shape if int(np.prod(shape)) == outputs else None  # type: ignore[return-value]
    return None
