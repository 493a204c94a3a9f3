"""Compile for backends that compare (MPC, plain): the exported graph, run op by op.

Where HE must replace ReLU, max-pool and softmax by polynomials, a backend
with exact comparisons runs them by its own protocols. So here the model is
exported once (``torch.export``), checked (every operation on private data
needs an implementation in :mod:`pets.compiler.exact_ops`; all that lack one
are reported at once), calibrated on the example input with the plain
backend (the ranges that size exp, reciprocal and inverse square roots), and
then run node by node on private tensors of any rank: images stay images.

``weights_from=r`` secret-shares party ``r``'s parameters at compile time, so
a model owner's weights stay as secret as the client's input; every party
compiles the same architecture, and the calibrated ranges are party ``r``'s.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import fx

from pets.backends.base import Backend, Requirements
from pets.compiler.exact_ops import implementation, implements
from pets.compiler.graph import label, where
from pets.errors import CompileError, ModelIssue, ShapeMismatchError, UnsupportedModelError
from pets.tensor import PrivateTensor

__all__ = ["ExactProgram"]

Interval = tuple[float, float]


@implements(operator.getitem)
def _getitem(ctx: Any, value: Any, index: Any) -> Any:
    return value[index]


def _private(value: Any) -> bool:
    if isinstance(value, PrivateTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_private(v) for v in value)
    return False


class _Calibration:
    """Records the range of each value an approximation asks about (plain backend)."""

    def __init__(self, backend: Backend, margin: float) -> None:
        self.backend = backend
        self.margin = margin
        self.node = ""
        self.ranges: dict[str, Interval] = {}

    def interval(self, key: str, tensor: PrivateTensor) -> Interval:
        values = np.asarray(self.backend.decrypt(tensor))
        lo, hi = float(values.min()), float(values.max())
        pad = max(hi - lo, abs(lo), abs(hi), 1e-3) * self.margin
        widened = (lo - pad, hi + pad)
        name = f"{self.node}.{key}"
        old = self.ranges.get(name)
        self.ranges[name] = widened if old is None else (
            min(old[0], widened[0]), max(old[1], widened[1])
        )
        return self.ranges[name]


class Ranges:
    """Serves calibrated (or declared) ranges during a private run."""

    def __init__(self, ranges: Mapping[str, Interval]) -> None:
        self.ranges = ranges
        self.node = ""

    def interval(self, key: str, tensor: PrivateTensor) -> Interval:
        return self.ranges[f"{self.node}.{key}"]


class ExactProgram:
    """An exported torch model ready to run on private tensors, op by op."""

    def __init__(
        self,
        module: torch.nn.Module | torch.export.ExportedProgram,
        example: torch.Tensor,
        *,
        ranges: Mapping[str, Interval] | None = None,
        margin: float = 0.1,
    ) -> None:
        if isinstance(module, torch.export.ExportedProgram):
            exported = module
            self.module: torch.nn.Module | None = None
        else:
            if not isinstance(module, torch.nn.Module):
                raise CompileError(
                    f"compile takes a torch.nn.Module or a torch.export.ExportedProgram, got "
                    f"{type(module).__name__}; wrap a function in an nn.Module"
                )
            self.module = copy.deepcopy(module).eval()
            floats = [p.dtype for p in self.module.parameters() if p.is_floating_point()]
            example = example.to(floats[0] if floats else torch.float32)  # the module's dtype
            try:
                exported = torch.export.export(self.module, (example,))
            except Exception as exc:  # torch raises many types for untraceable models
                raise UnsupportedModelError([ModelIssue(
                    type(module).__name__, f"torch.export cannot trace it ({exc}).",
                    "remove data-dependent control flow (if/for on tensor values) or export "
                    "the model yourself and pass the ExportedProgram",
                )]) from exc
        self.graph: fx.Graph = exported.graph
        self.parameters: dict[str, Any] = {}
        self.targets: dict[str, str] = {}  # placeholder name -> state_dict name
        self.input_name = ""
        state = {**exported.state_dict, **getattr(exported, "constants", {})}
        for spec in exported.graph_signature.input_specs:
            name = spec.arg.name  # type: ignore[union-attr]
            if spec.kind.name == "USER_INPUT":
                if self.input_name:
                    raise CompileError("pets compiles models with one input tensor")
                self.input_name = name
            else:
                value = state.get(str(spec.target))
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    value = value.detach().to(torch.float64)
                self.parameters[name] = value
                self.targets[name] = str(spec.target)
        self.input_shape = tuple(int(n) for n in example.shape[1:])
        with torch.no_grad():
            output = exported.module()(example if self.module is not None else example.float())
        if not isinstance(output, torch.Tensor):
            raise CompileError("pets compiles models with one output tensor")
        self.output_shape = tuple(int(n) for n in output.shape[1:])
        self.check()
        self.ranges: dict[str, Interval] = dict(ranges or {})
        self.margin = margin
        self.functions = tuple(sorted({
            str(n.target).split(".")[1] for n in self.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("aten.") and str(
                n.target).split(".")[1] in ("relu", "softmax", "sigmoid", "tanh", "max_pool2d",
                                            "layer_norm", "group_norm", "gelu", "silu", "exp")
        }))

    # ---- checks ---------------------------------------------------------------------------

    def private_nodes(self) -> set[fx.Node]:
        """Nodes whose value depends on the private input."""
        private: set[fx.Node] = set()
        for node in self.graph.nodes:
            if node.name == self.input_name or any(a in private for a in node.all_input_nodes):
                private.add(node)
        return private

    def check(self) -> None:
        """Raise :class:`UnsupportedModelError` listing every operation that cannot run."""
        issues = []
        for node in self.graph.nodes:
            if node.op == "call_function" and node in self.private_nodes() and implementation(
                node.target
            ) is None:
                name = str(node.target).split(".")[1] if "." in str(node.target) else str(
                    node.target)
                issues.append(ModelIssue(
                    label(node), f"{name} has no implementation on private data.",
                    _FIXES.get(name, "use supported layers: Linear, Conv2d, ReLU, MaxPool2d, "
                               "AvgPool2d, BatchNorm (eval), LayerNorm, GroupNorm, Softmax, "
                               "Sigmoid, Tanh, GELU, Flatten, Dropout"),
                ))
        if issues:
            raise UnsupportedModelError(issues)

    # ---- running ----------------------------------------------------------------------------

    def run(self, x: PrivateTensor, parameters: Mapping[str, Any], context: Any) -> PrivateTensor:
        """The model on private ``x`` with these parameter values (plain or private)."""
        env: dict[fx.Node, Any] = {}
        for node in self.graph.nodes:
            if node.op == "placeholder":
                env[node] = x if node.name == self.input_name else parameters[node.name]
            elif node.op == "call_function":
                args = fx.node.map_arg(node.args, env.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
                if _private(args) or _private(kwargs):
                    context.node = node.name
                    impl = implementation(node.target)
                    assert impl is not None  # check() ran
                    env[node] = impl(context, *args, **kwargs)
                else:
                    with torch.no_grad():
                        env[node] = node.target(*args, **kwargs)
            elif node.op == "output":
                (result,) = node.args[0] if isinstance(node.args[0], (tuple, list)) else (
                    node.args[0],)
                value = env[result]
                if not isinstance(value, PrivateTensor):
                    raise CompileError("the model's output does not depend on its input")
                return value
            else:  # get_attr: constants
                raise CompileError(f"unexpected graph node {node.op} {node.target}")
        raise CompileError("the exported graph has no output")

    def calibrate(self, example: np.ndarray) -> dict[str, Interval]:
        """Ranges of what the approximations see, on the example input (plain arithmetic)."""
        from pets.registry import backend as make_backend

        plain = make_backend("plain")
        recorder = _Calibration(plain, self.margin)
        self.run(plain.encrypt(example), self.parameters, recorder)
        ranges = dict(recorder.ranges)
        nodes = sorted({key.split(".")[0] for key in ranges})
        unknown = sorted(set(self.ranges) - set(nodes))
        if unknown:
            raise ValueError(
                f"ranges names {unknown}, which match no approximated function; under the exact "
                f"lowering a name is a graph node: one of {nodes}"
            )
        for name, interval in self.ranges.items():  # declared ranges win
            for key in [k for k in ranges if k.split(".")[0] == name]:
                ranges[key] = (float(interval[0]), float(interval[1]))
        return ranges

    def node_names(self) -> Iterator[str]:
        for node in self.graph.nodes:
            if node.op == "call_function":
                yield f"{node.name}: {where(node)} ({str(node.target).split('.')[1]})"

    def requirements(self, rows: int) -> Requirements:
        return Requirements(max_rows=rows, functions=self.functions)


_FIXES = {
    "log_softmax": "use softmax (or take argmax of the logits after revealing them)",
    "embedding": "one-hot encode the input before sharing it and use nn.Linear(bias=False)",
    "lstm": "use a feed-forward model over a fixed-length window",
    "gru": "use a feed-forward model over a fixed-length window",
    "log": "remove it, or apply it after revealing the result",
    "sqrt": "remove it, or apply it after revealing the result",
}


def check_weights_owner(backend: Backend, weights_from: int | None) -> int | None:
    """``weights_from`` checked against the backend's parties and capabilities."""
    if weights_from is None:
        return None
    if not backend.capabilities.private_weights:
        raise CompileError(
            f"weights_from={weights_from}: the {backend.name} backend cannot keep weights "
            "secret (it multiplies private data by plain matrices only); use pets.backend('mpc')"
        )
    return backend.check_party(weights_from, "weights_from")


def share_parameters(program: ExactProgram, backend: Backend, owner: int) -> dict[str, Any]:
    """Party ``owner``'s floating-point parameters secret-shared, in graph order."""
    shared: dict[str, Any] = {}
    mine = backend.rank == owner
    for name, value in program.parameters.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            data = value.numpy() if mine else None
            shared[name] = backend.encrypt(data, src=owner)
        else:
            shared[name] = value
    return shared


def check_input(program: ExactProgram, tensor: Any) -> None:
    if not isinstance(tensor, PrivateTensor):
        raise TypeError(
            f"a PrivateModel runs on pets.PrivateTensor, got {type(tensor).__name__}; "
            "encrypt the input first with model.encrypt(x)"
        )
    if tensor.shape[1:] != program.input_shape:
        raise ShapeMismatchError(
            f"this model takes samples of shape {program.input_shape}, got a private tensor of "
            f"shape {tensor.shape}; encrypt (batch, *{program.input_shape}) with model.encrypt"
        )


def widest(ranges: Mapping[str, Interval]) -> float:
    return max((max(abs(lo), abs(hi)) for lo, hi in ranges.values()), default=0.0)

