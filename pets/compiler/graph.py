"""Trace a torch model once into an fx graph, and run parts of it in float64.

An ``nn.Module`` is traced with ``torch.fx.symbolic_trace`` (``pets.nn`` modules
kept whole); a ``torch.export.ExportedProgram`` gives its graph through
``.module()``. Either way the result is a float64, eval-mode copy that
:class:`GraphRunner` runs node by node: once on the example input (calibration)
and then on probe inputs (to read off affine maps).
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from pets.compiler.lowering import is_registered
from pets.errors import CompileError, ModelIssue, UnsupportedModelError

__all__ = ["GraphRunner", "TracedModel", "is_in_place", "label", "trace", "where"]

_PASS_THROUGH_METHODS = {"float", "double", "to", "type", "contiguous", "detach"}
_IN_PLACE_FUNCTIONS = {
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ipow,
    operator.imatmul,
}


class _Tracer(fx.Tracer):
    """fx tracer that keeps modules with a registered lowering (``pets.nn`` ones too) whole."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m).__module__ == "pets.nn" or is_registered(type(m)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


class GraphRunner(fx.Interpreter):
    """Runs single nodes of a graph in float64 with values from an environment."""

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return _as_float64(value)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in _PASS_THROUGH_METHODS and isinstance(args[0], torch.Tensor):
            return args[0]  # keep float64: casts would lose the probe's precision
        return super().call_method(target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target is torch.ops.aten._to_copy.default and isinstance(args[0], torch.Tensor):
            return args[0].clone()
        return super().call_function(target, args, kwargs)

    def run_nodes(self, nodes: Iterable[fx.Node], env: dict[fx.Node, Any]) -> dict[fx.Node, Any]:
        """Run ``nodes`` in order, reading and writing ``env``; returns ``env``."""
        self.env = env
        with torch.no_grad():
            for node in nodes:
                env[node] = self.run_node(node)
        return env


def _as_float64(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().to(torch.float64)
    return value


def _snapshot(value: Any) -> Any:
    """A copy that later in-place operations cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(_snapshot(v) for v in value)
    return value


@dataclass
class TracedModel:
    """A model's graph, run once on the example input."""

    graph_module: fx.GraphModule
    #: ``"fx"`` (symbolic_trace) or ``"export"`` (torch.export)
    source: str
    input_node: fx.Node
    #: the single tensor node the model returns
    output_node: fx.Node | None
    #: nodes the output depends on, in graph order (placeholders excluded)
    live: list[fx.Node]
    #: every live node's value on the example input (float64)
    values: dict[fx.Node, Any]
    #: nodes whose value depends on the private input
    private: set[fx.Node]
    batch: int
    issues: list[ModelIssue] = field(default_factory=list)

    @property
    def runner(self) -> GraphRunner:
        return GraphRunner(self.graph_module)

    def module_of(self, node: fx.Node) -> nn.Module | None:
        if node.op != "call_module":
            return None
        module = self.graph_module.get_submodule(str(node.target))
        return module

    def constants(self) -> dict[fx.Node, Any]:
        """Values of live nodes that do not depend on the private input."""
        return {n: v for n, v in self.values.items() if n not in self.private}


def where(node: fx.Node) -> str:
    """Qualified name of what a node calls, for messages: ``features.3`` or ``relu_1``."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path, cls = list(stack.values())[-1]
        module_path = getattr(cls, "__module__", str(cls))
        if path and str(module_path).startswith("torch.nn"):
            return str(path)
    return node.name


def label(node: fx.Node) -> str:
    """:func:`where` plus the module class when there is one: ``features.0 (Conv2d)``."""
    name = where(node)
    owner = node.graph.owning_module
    if node.op == "call_module" and owner is not None:
        return f"{name} ({type(owner.get_submodule(name)).__name__})"
    stack = node.meta.get("nn_module_stack")
    if stack and name != node.name:
        cls = list(stack.values())[-1][1]
        return f"{name} ({getattr(cls, '__name__', str(cls).rsplit('.', 1)[-1])})"
    return name


def _graph_module(model: Any) -> tuple[fx.GraphModule, str]:
    if isinstance(model, torch.export.ExportedProgram):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            exported = copy.deepcopy(model.module())
        assert isinstance(exported, fx.GraphModule)
        return exported.double(), "export"
    if not isinstance(model, nn.Module):
        what = "a lambda" if getattr(model, "__name__", "") == "<lambda>" else (
            f"a {type(model).__name__}")
        hint = (
            "; wrap the function in a module: class Net(torch.nn.Module): def forward(self, x): "
            "return f(x)" if callable(model) else ""
        )
        raise CompileError(
            f"compile takes a torch.nn.Module or a torch.export.ExportedProgram, got {what}{hint}"
        )
    mode_dependent = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    if model.training and any(isinstance(m, mode_dependent) for m in model.modules()):
        warnings.warn(
            f"{type(model).__name__} is in training mode; compiling its eval-mode behaviour "
            "(BatchNorm running statistics, no dropout). Call model.eval() to silence this.",
            stacklevel=4,
        )
    module = copy.deepcopy(model).eval().double()
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        raise UnsupportedModelError([
            ModelIssue(
                where=type(model).__name__,
                problem=f"torch.fx cannot trace it ({type(exc).__name__}: {exc}).",
                fix="remove Python control flow that depends on tensor values, or pass "
                "torch.export.export(model, (x,)) instead of the module",
            )
        ]) from exc
    return fx.GraphModule(module, graph), "fx"


def trace(model: Any, example_input: torch.Tensor) -> TracedModel:
    """Trace ``model`` and run it once on ``example_input`` (float64, eval mode)."""
    if example_input.numel() == 0 or example_input.shape[0] == 0:
        raise CompileError(
            f"example_input is empty (shape {tuple(example_input.shape)}); pass a batch of typical "
            "inputs (at least one sample): it fixes the input shape and calibrates the ranges"
        )
    graph_module, source = _graph_module(model)
    graph = graph_module.graph
    issues: list[ModelIssue] = []
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    required = [n for n in placeholders[1:] if not n.args]  # args hold a default value
    if not placeholders:
        raise CompileError("the model takes no input")
    if required:
        issues.append(ModelIssue(
            where=", ".join(n.name for n in required),
            problem=f"the model takes {1 + len(required)} inputs; pets compiles models of one "
            "private input.",
            fix="concatenate the inputs into one tensor, or give the extra ones defaults",
        ))
    issues.extend(_in_place_issues(graph_module))
    output = next(n for n in graph.nodes if n.op == "output")
    output_node = _single_output(output.args[0], issues)

    live = _live_nodes(output)
    env: dict[fx.Node, Any] = {placeholders[0]: example_input}
    for extra in placeholders[1:]:
        env[extra] = extra.args[0] if extra.args else None
    values: dict[fx.Node, Any] = {}
    runner = GraphRunner(graph_module)
    runner.env = env
    try:
        with torch.no_grad():
            for node in live:
                env[node] = runner.run_node(node)
                values[node] = _snapshot(env[node])
    except Exception as exc:
        raise CompileError(
            f"the model fails on example_input of shape {tuple(example_input.shape)} at "
            f"{where(node)} ({type(exc).__name__}: {exc}); pass an input the model accepts"
        ) from exc
    values[placeholders[0]] = example_input
    private = {placeholders[0]}
    for node in live:
        if any(arg in private for arg in node.all_input_nodes):
            private.add(node)
    return TracedModel(
        graph_module=graph_module,
        source=source,
        input_node=placeholders[0],
        output_node=output_node,
        live=live,
        values=values,
        private=private,
        batch=int(example_input.shape[0]),
        issues=issues,
    )


def _single_output(result: Any, issues: list[ModelIssue]) -> fx.Node | None:
    while isinstance(result, tuple | list) and len(result) == 1:
        result = result[0]
    if isinstance(result, fx.Node):
        return result
    issues.append(ModelIssue(
        where="output",
        problem="the model returns several values or a structure; pets compiles models that "
        "return one tensor.",
        fix="return a single tensor (concatenate the outputs with torch.cat)",
    ))
    return None


def _live_nodes(output: fx.Node) -> list[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(output.all_input_nodes)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.all_input_nodes)
    graph = output.graph
    return [n for n in graph.nodes if n in seen and n.op != "placeholder"]


def is_in_place(node: fx.Node) -> bool:
    """Whether ``node`` changes an argument: ``x.relu_()``, ``x += y``, ``inplace=True``."""
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.startswith("_")
    if node.op != "call_function":
        return False
    if isinstance(node.target, torch._ops.OpOverload):
        return bool(node.target._schema.is_mutable)
    return node.target in _IN_PLACE_FUNCTIONS or node.kwargs.get("inplace") is True


def _in_place_issues(graph_module: fx.GraphModule) -> list[ModelIssue]:
    return [
        ModelIssue(
            where=where(node),
            problem=f"in-place operation {node.target if node.op == 'call_method' else node.name} "
            "changes a tensor that other parts of the graph may read; the traced graph cannot "
            "represent that faithfully.",
            fix="use the out-of-place form (x = x + y, torch.relu(x), inplace=False)",
        )
        for node in graph_module.graph.nodes
        if is_in_place(node)
    ]
