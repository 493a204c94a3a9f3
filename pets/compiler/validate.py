"""Validation: find every part of a model that cannot run privately, all at once.

Like Opacus' ``ModuleValidator``, this never stops at the first problem: it
classifies each node that touches private data with the lowering registry and
collects a :class:`~pets.errors.ModelIssue` (where, why, what instead) for each
one that cannot run, so a user fixes the model in one pass.
"""

from __future__ import annotations

import torch
from torch import fx

import pets.compiler.rules  # noqa: F401  (registers the lowerings)
from pets.compiler.graph import TracedModel, is_in_place, where
from pets.compiler.lowering import Linear, Lowering, OpContext, Unsupported, lookup
from pets.compiler.lowering import supported_layers as _supported_layers
from pets.errors import ModelIssue, UnsupportedModelError

__all__ = ["classify", "validate"]


def _is_tensor_like(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor) for v in value)


def _describe_target(node: fx.Node, traced: TracedModel) -> str:
    module = traced.module_of(node)
    if module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if isinstance(node.target, torch._ops.OpOverload):
        return str(node.target.name()).replace("::", ".")  # type: ignore[no-untyped-call]
    name = getattr(node.target, "__name__", None) or str(node.target)
    module_name = getattr(node.target, "__module__", None)
    if module_name == "_operator":
        module_name = "operator"
    return f"{module_name}.{name}" if module_name else str(name)


def _arguments(node: fx.Node) -> list[fx.Node]:
    """Node arguments in order, repeats kept (``x * x`` has two)."""
    found: list[fx.Node] = []

    def collect(arg: fx.Node) -> fx.Node:
        found.append(arg)
        return arg

    fx.node.map_arg((node.args, node.kwargs), collect)
    return found


def classify(traced: TracedModel) -> tuple[dict[fx.Node, Lowering], list[ModelIssue]]:
    """The lowering of every live node that touches private data, and every issue found."""
    lowerings: dict[fx.Node, Lowering] = {}
    issues: list[ModelIssue] = list(traced.issues)
    for node in traced.live:
        if node not in traced.private or node.op in ("output", "get_attr") or is_in_place(node):
            continue  # in-place nodes are reported by the trace
        value = traced.values[node]
        if not _is_tensor_like(value):  # a shape, e.g. x.size(0): recomputed by the probes
            lowerings[node] = Linear()
            continue
        data_args = tuple(
            arg for arg in _arguments(node)
            if arg in traced.private and _is_tensor_like(traced.values[arg])
        )
        module = traced.module_of(node)
        rule = lookup(node, module)
        if rule is None:
            lowering: Lowering = Unsupported(
                f"pets has no lowering for {_describe_target(node, traced)}.",
                f"use supported layers ({', '.join(_supported_layers())}, their functional "
                "forms, x * x) or register one with pets.compiler.register_lowering",
            )
        else:
            lowering = rule(OpContext(node, module, data_args, traced.values))
        lowerings[node] = lowering
        if isinstance(lowering, Unsupported):
            what = _describe_target(node, traced)
            problem = lowering.problem
            if not problem.startswith(("pets has no", what)):
                problem = f"{what} {problem}"
            issues.append(ModelIssue(where(node), problem, lowering.fix))
    return lowerings, _unique(issues)


def _unique(issues: list[ModelIssue]) -> list[ModelIssue]:
    seen: set[tuple[str, str]] = set()
    result = []
    for issue in issues:
        if (issue.where, issue.problem) not in seen:
            seen.add((issue.where, issue.problem))
            result.append(issue)
    return result


def validate(traced: TracedModel) -> dict[fx.Node, Lowering]:
    """Lowerings of every private node; raises :class:`UnsupportedModelError` listing all issues."""
    lowerings, issues = classify(traced)
    if issues:
        raise UnsupportedModelError(issues)
    return lowerings
