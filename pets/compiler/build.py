"""Turn a validated graph into the layers of a private model.

Non-linear nodes (squares, products, activations) become layers in graph order;
whatever feeds them (and the output) through linear nodes becomes one
:class:`~pets.compiler.layers.Affine` layer, probed from torch. Activations get
their fitted polynomial here, over a declared or calibrated range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.polynomial import polynomial as power_basis
from torch import fx

from pets.compiler.approximate import (
    DEFAULT_DEGREES,
    Approximation,
    calibrated_interval,
    fit_polynomial,
    max_error,
)
from pets.compiler.conv import DENSE_LIMIT, probe_convolution, region_window
from pets.compiler.fuse import (
    AffineMap,
    affine_region,
    check_affine,
    is_identity,
    probe_affine,
)
from pets.compiler.graph import TracedModel, label, where
from pets.compiler.layers import Affine, ConvolutionInfo, Layer, Polynomial, Product, Square
from pets.compiler.lowering import Activation, Linear, Lowering
from pets.compiler.lowering import Polynomial as PolynomialLowering
from pets.compiler.lowering import Product as ProductLowering
from pets.compiler.lowering import Square as SquareLowering
from pets.compiler.lowerings import CompileOptions
from pets.errors import ModelIssue, UnsupportedModelError
from pets.slots import SparseMatrix

__all__ = ["Program", "build"]

Interval = tuple[float, float]


@dataclass
class Program:
    """The layers of a compiled model and the shapes around them."""

    layers: list[Layer]
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _flat(value: Any, batch: int) -> np.ndarray:
    return np.asarray(value.detach().reshape(batch, -1).numpy(), dtype=np.float64)


class _Builder:
    def __init__(
        self, traced: TracedModel, lowerings: Mapping[fx.Node, Lowering],
        options: CompileOptions,
    ) -> None:
        self.traced = traced
        self.lowerings = lowerings
        self.options = options
        self.layers: list[Layer] = []
        self.issues: list[ModelIssue] = []
        self.names: dict[fx.Node, str] = {traced.input_node: traced.input_node.name}
        self.used_keys: set[tuple[str, str]] = set()

    # ---- values -------------------------------------------------------------

    def _data_args(self, node: fx.Node) -> list[fx.Node]:
        return [
            a for a in node.all_input_nodes
            if a in self.traced.private and isinstance(self.traced.values.get(a), torch.Tensor)
        ]

    def _max_abs(self, node: fx.Node) -> float:
        largest = float(self.traced.values[node].abs().max()) if node in self.traced.values else 0.0
        return largest * (1.0 + self.options.margin)

    def value(self, node: fx.Node) -> str | None:
        """The run-time name of ``node``'s value, adding an Affine layer if needed."""
        if node in self.names:
            return self.names[node]
        if not isinstance(self.lowerings.get(node), Linear):
            return None  # a non-linear layer that could not be built: its issue is reported
        tensor = self.traced.values.get(node)
        if not isinstance(tensor, torch.Tensor) or tensor.ndim == 0 or (
            tensor.shape[0] != self.traced.batch
        ):
            self.issues.append(ModelIssue(
                where(node), "a private value here does not keep the batch on dimension 0.",
                "keep every private tensor shaped (batch, ...)",
            ))
            return None
        inputs, region = affine_region(self.traced, self.lowerings, node)
        input_names = [self.value(n) for n in inputs]
        if any(name is None for name in input_names):
            return None
        convolution = self._convolution(inputs, region, node)
        if convolution is not None:
            matrix, bias, info = convolution
            affine: AffineMap = ((matrix,), bias)
        else:
            info = None
            sizes = [int(np.prod(self.traced.values[n].shape[1:])) for n in inputs]
            outputs = int(np.prod(tensor.shape[1:]))
            if sum(sizes) * outputs > DENSE_LIMIT:
                self.issues.append(ModelIssue(
                    where(node), f"the linear layers leading here map {sum(sizes)} features to "
                    f"{outputs} as one dense matrix ({sum(sizes) * outputs * 8 / 2**30:.1f} GiB); "
                    "pets keeps runs of Conv2d/AvgPool2d/BatchNorm2d sparse, but this run mixes "
                    "in other operations.",
                    "put a non-linearity (or pets.nn.Square) between the convolutions and the "
                    "other linear layers, or shrink the layer",
                ))
                return None
            affine = probe_affine(self.traced, inputs, region, node)
        issue = check_affine(self.traced, inputs, node, affine)
        if issue is not None:
            self.issues.append(issue)
            return None
        if is_identity(affine):
            self.names[node] = self.names[inputs[0]]
            return self.names[node]
        weights, bias = affine
        sources = [label(n) for n in region if isinstance(self.traced.values[n], torch.Tensor)]
        self.layers.append(Affine(
            node.name, tuple(str(n) for n in input_names), ", ".join(dict.fromkeys(sources)),
            weights=weights, bias=bias, convolution=info,
        ))
        self.names[node] = node.name
        return node.name

    def _convolution(
        self, inputs: list[fx.Node], region: list[fx.Node], output: fx.Node
    ) -> tuple[SparseMatrix, np.ndarray, ConvolutionInfo] | None:
        """The region as a sparse convolution, if it is one (see :mod:`.conv`)."""
        found = region_window(self.traced, inputs, region, output)
        if found is None:
            return None
        wy, wx, out_shape = found
        if (wy.kernel, wx.kernel, wy.stride, wx.stride) == (1, 1, 1, 1):
            return None  # nothing spatial (a batch norm alone): the dense probe is exact
        probed = probe_convolution(self.traced, inputs[0], region, output, (wy, wx))
        if probed is None:
            return None
        matrix, bias = probed
        in_shape = tuple(int(n) for n in self.traced.values[inputs[0]].shape[1:])
        info = ConvolutionInfo(in_shape=in_shape, out_shape=out_shape,  # type: ignore[arg-type]
                               stride=(wy.stride, wx.stride))
        return matrix, bias, info

    # ---- non-linear layers -----------------------------------------------------

    def nonlinear(self, node: fx.Node, lowering: Lowering) -> None:
        args = self._data_args(node)
        names = [self.value(a) for a in args]
        if any(name is None for name in names):
            return
        inputs = tuple(str(n) for n in names)
        sizes = tuple(self._max_abs(a) for a in args)
        layer: Layer
        if isinstance(lowering, SquareLowering):
            layer = Square(node.name, inputs, label(node), input_max_abs=sizes)
        elif isinstance(lowering, ProductLowering):
            if self.traced.values[args[0]].shape != self.traced.values[args[1]].shape:
                self.issues.append(ModelIssue(
                    where(node), "multiplies private tensors of different shapes.",
                    "multiply tensors of equal shapes (broadcasting is not supported)",
                ))
                return
            layer = Product(node.name, inputs, label(node), input_max_abs=sizes)
        elif isinstance(lowering, PolynomialLowering):
            seen = _flat(self.traced.values[args[0]], 1)
            interval = calibrated_interval(seen, self.options.margin)
            layer = Polynomial(
                node.name, inputs, label(node), input_max_abs=sizes,
                coefficients=lowering.coefficients, interval=interval,
            )
        else:
            assert isinstance(lowering, Activation)
            approximation = self._approximate(node, args[0], lowering.function)
            layer = Polynomial(
                node.name, inputs, label(node), input_max_abs=sizes,
                coefficients=approximation.coefficients, approximation=approximation,
                interval=approximation.interval,
            )
        self.layers.append(layer)
        self.names[node] = node.name

    def _option(self, option: str, node: fx.Node, function: str) -> Any:
        table: Mapping[str, Any] = getattr(self.options, option)
        for key in (where(node), node.name, function):
            if key in table:
                self.used_keys.add((option, key))
                return table[key]
        return None

    def _approximate(self, node: fx.Node, arg: fx.Node, function: str) -> Approximation:
        options = self.options
        inputs = _flat(self.traced.values[arg], 1)[0]
        declared = self._option("ranges", node, function) or options.activation_range
        interval = (
            (float(declared[0]), float(declared[1])) if declared is not None
            else calibrated_interval(inputs, options.margin)
        )
        degree = int(
            self._option("degrees", node, function) or options.degree
            or DEFAULT_DEGREES.get(function, 4)
        )
        reference = self._element_function(node, arg)
        coefficients = fit_polynomial(reference, interval, degree)
        truth = _flat(self.traced.values[node], 1)[0]
        fitted = power_basis.polyval(inputs, coefficients)
        return Approximation(
            where=where(node),
            function=function,
            degree=degree,
            interval=interval,
            interval_source="declared" if declared is not None else "calibrated",
            coefficients=coefficients,
            max_error=max_error(reference, coefficients, interval),
            calibration_error=float(np.max(np.abs(fitted - truth))),
            outside_fraction=float(np.mean((inputs < interval[0]) | (inputs > interval[1]))),
        )

    def _element_function(self, node: fx.Node, arg: fx.Node) -> Callable[[np.ndarray], np.ndarray]:
        """The activation exactly as the model computes it, on a 1-D array."""
        runner = self.traced.runner
        constants = self.traced.constants()

        def function(x: np.ndarray) -> np.ndarray:
            env = dict(constants)
            env[arg] = torch.tensor(x, dtype=torch.float64)
            runner.run_nodes([node], env)
            return np.asarray(env[node].numpy(), dtype=np.float64)

        return function


def build(
    traced: TracedModel, lowerings: Mapping[fx.Node, Lowering], options: CompileOptions
) -> Program:
    """The layers computing ``traced``; raises :class:`UnsupportedModelError` on any issue."""
    builder = _Builder(traced, lowerings, options)
    for node in traced.live:
        lowering = lowerings.get(node)
        if node in traced.private and lowering is not None and not isinstance(lowering, Linear):
            builder.nonlinear(node, lowering)
    assert traced.output_node is not None
    output_name = builder.value(traced.output_node)
    if builder.issues:
        raise UnsupportedModelError(builder.issues)
    for option in ("ranges", "degrees"):
        table: Mapping[str, Any] = getattr(options, option)
        unknown = {key for key in table if (option, key) not in builder.used_keys}
        if unknown:
            activations = [
                layer.source for layer in builder.layers if isinstance(layer, Polynomial)
            ]
            raise ValueError(
                f"{option} names {sorted(unknown)}, which match no activation; use a function "
                f"name (e.g. 'relu') or one of the activations: {activations}"
            )
    assert output_name is not None
    output_value = traced.values[traced.output_node]
    return Program(
        layers=normalise_polynomial_inputs(builder.layers, output_name),
        input_name=traced.input_node.name,
        output_name=output_name,
        input_shape=tuple(traced.values[traced.input_node].shape[1:]),
        output_shape=tuple(output_value.shape[1:]),
    )


def normalise_polynomial_inputs(layers: list[Layer], output_name: str) -> list[Layer]:
    """Fold ``1 / r`` into the Affine layer feeding a polynomial (``r``: the largest end of
    the polynomial's interval) and ``r**k`` into its coefficients.

    The same function, but every power the polynomial builds stays within about 1
    instead of ``r**degree`` (a degree-7 stand-in for ReLU on [-13, 13] built values of
    6e7 in the power basis): smaller values need fewer integer bits, leaving a larger,
    more precise scale. Free: the division rides on the product already there.
    """
    readers: dict[str, int] = {}
    for layer in layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    readers[output_name] = readers.get(output_name, 0) + 1
    by_name = {layer.name: index for index, layer in enumerate(layers)}
    result = list(layers)
    for index, layer in enumerate(layers):
        if not isinstance(layer, Polynomial) or len(layer.inputs) != 1:
            continue
        source = by_name.get(layer.inputs[0])
        producer = result[source] if source is not None else None
        if not isinstance(producer, Affine) or readers.get(producer.name) != 1:
            continue
        lo, hi = layer.interval
        r = max(abs(lo), abs(hi))
        if not np.isfinite(r) or r <= 0 or abs(r - 1.0) < 1e-12:
            continue
        assert source is not None
        result[source] = dataclasses.replace(
            producer,
            weights=tuple(_scaled(w, 1.0 / r) for w in producer.weights),
            bias=producer.bias / r,
        )
        result[index] = dataclasses.replace(
            layer,
            coefficients=tuple(float(c) * r**k for k, c in enumerate(layer.coefficients)),
            interval=(lo / r, hi / r),
            input_max_abs=tuple(v / r for v in layer.input_max_abs),
        )
    return result


def _scaled(weight: np.ndarray | SparseMatrix, factor: float) -> np.ndarray | SparseMatrix:
    if isinstance(weight, SparseMatrix):
        values = weight.values * factor
        values.flags.writeable = False
        return SparseMatrix(weight.rows, weight.cols, values, weight.shape)
    return np.asarray(weight) * factor
