"""Fuse runs of linear torch operations into one exact affine map each.

A run of Linear / Conv / AvgPool / Flatten / BatchNorm (eval) / Dropout /
reshapes ... between non-linear points is an affine function of its private
inputs, per sample. Rather than folding each layer kind by hand, the torch
sub-graph itself is probed in float64: ``b = f(0)`` and ``W = f(I) - b`` (the
rows of ``I`` are basis vectors). BatchNorm folds, convolutions become (sparse)
matrices and residual sums become two matrices, all by construction. The map is
then checked against torch on the example input, which catches operations that
mix samples or are not affine after all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import fx

from pets.compiler.graph import TracedModel, where
from pets.compiler.lowering import Linear, Lowering
from pets.errors import ModelIssue
from pets.slots import SparseMatrix

__all__ = ["AffineMap", "affine_region", "check_affine", "is_identity", "probe_affine"]

_PROBE_ROWS = 256  # basis vectors per probe batch (when the batch size is free)

AffineMap = tuple[tuple[np.ndarray | SparseMatrix, ...], np.ndarray]


def affine_region(
    traced: TracedModel, lowerings: Mapping[fx.Node, Lowering], node: fx.Node
) -> tuple[list[fx.Node], list[fx.Node]]:
    """The private inputs (boundary values) and the linear nodes that compute ``node``.

    Walks back from ``node`` through linear nodes until it meets the model input
    or the output of a non-linear layer. Both lists are in graph order.
    """
    inputs: set[fx.Node] = set()
    region: set[fx.Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current in region or current in inputs:
            continue
        if current is traced.input_node or not isinstance(lowerings.get(current), Linear):
            inputs.add(current)
            continue
        region.add(current)
        stack.extend(arg for arg in current.all_input_nodes if arg in traced.private)
    order = {n: i for i, n in enumerate(traced.graph_module.graph.nodes)}
    return sorted(inputs, key=order.__getitem__), sorted(region, key=order.__getitem__)


def _feature_shape(traced: TracedModel, node: fx.Node) -> tuple[int, ...]:
    return tuple(traced.values[node].shape[1:])


def probe_affine(
    traced: TracedModel, inputs: list[fx.Node], region: list[fx.Node], output: fx.Node
) -> AffineMap:
    """``(W_1, ..., W_k), b`` with ``output = sum_j inputs_j @ W_j + b`` per flattened sample."""
    runner = traced.runner
    constants = traced.constants()
    shapes = [_feature_shape(traced, n) for n in inputs]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    # an exported graph may have its batch size baked into reshapes: probe with that size
    fixed = traced.batch if traced.source == "export" else None

    def run(rows: list[np.ndarray]) -> np.ndarray:
        count = rows[0].shape[0]
        batch = fixed or count
        env: dict[fx.Node, Any] = dict(constants)
        for node, shape, block in zip(inputs, shapes, rows, strict=True):
            padded = np.zeros((batch, block.shape[1]))
            padded[:count] = block
            env[node] = torch.from_numpy(padded).reshape(batch, *shape)
        runner.run_nodes(region, env)
        result = env[output]
        return np.asarray(result.detach().reshape(batch, -1).numpy()[:count], dtype=np.float64)

    zeros = [np.zeros((1, size)) for size in sizes]
    bias = run(zeros)[0]
    weights = []
    for j, size in enumerate(sizes):
        chunk = fixed or _PROBE_ROWS
        blocks = []
        for start in range(0, size, chunk):
            stop = min(start + chunk, size)
            rows = [np.zeros((stop - start, s)) for s in sizes]
            rows[j][np.arange(stop - start), np.arange(start, stop)] = 1.0
            blocks.append(run(rows) - bias)
        weights.append(np.concatenate(blocks, axis=0))
    return tuple(weights), bias


def check_affine(
    traced: TracedModel, inputs: list[fx.Node], output: fx.Node, affine: AffineMap
) -> ModelIssue | None:
    """An issue if the probed map does not reproduce torch on the example input."""
    weights, bias = affine
    batch = traced.batch
    expected = traced.values[output].reshape(batch, -1).numpy()
    got = sum(
        traced.values[n].reshape(batch, -1).numpy() @ w
        for n, w in zip(inputs, weights, strict=True)
    ) + bias
    scale = 1.0 + float(np.max(np.abs(expected), initial=0.0))
    if np.max(np.abs(got - expected), initial=0.0) <= 1e-7 * scale:
        return None
    return ModelIssue(
        where=where(output),
        problem="the linear operations leading here are not an affine function of each "
        "sample on its own (they mix samples of the batch, or are not linear).",
        fix="keep the batch on dimension 0 and operate on each sample independently",
    )


def is_identity(affine: AffineMap) -> bool:
    """Whether the map is ``x -> x`` (a reshape, flatten, dropout or identity)."""
    weights, bias = affine
    return (
        len(weights) == 1
        and isinstance(weights[0], np.ndarray)
        and weights[0].shape[0] == weights[0].shape[1]
        and not np.any(bias)
        and bool(np.array_equal(weights[0], np.eye(weights[0].shape[0])))
    )
