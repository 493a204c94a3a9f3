"""Where a per-sample packing puts each layer's outputs, and what the products will rotate.

A layer's output sits either at the ordinary slots (feature ``f`` at slot ``f``)
or, for a convolution, on the canvas of the input image (:mod:`pets.slots`),
where a strided convolution or a pool leaves its outputs in place. Each
convolution takes whichever of the two makes its own product and the next
one cheaper (plaintext multiplications per diagonal, rotations weighted by the
backend's :class:`~pets.backends.levelled.Planning`), looking one product ahead.

The compiler also describes, for the backend that makes the keys, every
product's periods and non-zero diagonals, and the gather table of a sparse
first product (the client packs its image's windows: im2col).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pets.backends.levelled import Planning
from pets.compiler.conv import Geometry
from pets.compiler.layers import Affine, Layer
from pets.slots import (
    SparseMatrix,
    diagonal_coordinates,
    encode_ints,
    gather_terms,
    period_of,
    plan_diagonals,
)

__all__ = ["assign_placements", "describe_gather", "describe_products", "first_product_layer"]

#: a first product is gathered when each output reads at most this share of the inputs
GATHER_DENSITY = 0.5


def _entries(weight: np.ndarray | SparseMatrix) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(weight, SparseMatrix):
        return weight.rows, weight.cols
    rows, cols = np.nonzero(weight)
    return rows, cols


def offsets(weight: np.ndarray | SparseMatrix, place_in: np.ndarray | None,
            place_out: np.ndarray | None) -> tuple[int, int, list[int]]:
    """Periods and non-zero diagonals of ``x @ weight`` between two placements."""
    rows, cols = _entries(weight)
    n, m = weight.shape
    slot_in = rows if place_in is None else place_in[rows]
    slot_out = cols if place_out is None else place_out[cols]
    period_in, period_out = period_of(place_in, n), period_of(place_out, m)
    k, _s = diagonal_coordinates(slot_in, slot_out, period_in, period_out)
    return period_in, period_out, np.unique(k).tolist()


def _cost(weight: np.ndarray | SparseMatrix, place_in: np.ndarray | None,
          place_out: np.ndarray | None, planning: Planning) -> float:
    period_in, period_out, ks = offsets(weight, place_in, place_out)
    plan = plan_diagonals(period_in, period_out, ks)
    rotations = len(plan.babies) + len(plan.giants) + len(plan.folds)
    return len(ks) + planning.rotation_cost * rotations


def _gather_cost(weight: np.ndarray | SparseMatrix, place_out: np.ndarray | None,
                 planning: Planning) -> float:
    table, _ = gather_terms(weight)
    period = period_of(place_out, weight.shape[1])
    blocks = max(1, planning.slots // period)
    return -(-table.shape[1] // blocks) + planning.rotation_cost * (blocks.bit_length() - 1)


def first_product_layer(layers: Sequence[Layer], input_name: str) -> Affine | None:
    """The Affine layer the input feeds, if it feeds one product only."""
    readers = [layer for layer in layers if input_name in layer.inputs]
    if len(readers) == 1 and isinstance(readers[0], Affine) and len(readers[0].inputs) == 1:
        return readers[0]
    return None


def gathered(layer: Affine | None) -> bool:
    """Whether a first product is sparse enough to gather (a convolution, not a dense layer)."""
    if layer is None:
        return False
    weight = layer.weights[0]
    table, _ = gather_terms(weight)
    return table.shape[1] <= GATHER_DENSITY * weight.shape[0]


def _next_product(layers: Sequence[Layer], name: str) -> tuple[Affine, int] | None:
    """The first Affine layer downstream of value ``name`` through element-wise layers."""
    current = name
    for layer in layers:
        if current in layer.inputs:
            if isinstance(layer, Affine):
                return layer, layer.inputs.index(current)
            if len(layer.inputs) != 1:
                return None
            current = layer.name
    return None


def assign_placements(layers: Sequence[Layer], input_name: str, input_shape: tuple[int, ...],
                      planning: Planning) -> dict[str, np.ndarray | None]:
    """Choose each convolution's output placement; returns every value's placement."""
    placements: dict[str, np.ndarray | None] = {input_name: None}
    geometry: dict[str, Geometry | None] = {
        input_name: Geometry(*input_shape, 1, input_shape[1:])  # type: ignore[arg-type]
        if len(input_shape) == 3 else None
    }
    first = first_product_layer(layers, input_name)
    for layer in layers:
        if not isinstance(layer, Affine):
            placements[layer.name] = placements[layer.inputs[0]]
            geometry[layer.name] = geometry[layer.inputs[0]]
            continue
        layer.placement = None
        geometry[layer.name] = None
        conv = layer.convolution
        if conv is None or len(layer.inputs) != 1:
            placements[layer.name] = None
            continue
        source = geometry.get(layer.inputs[0])
        if source is None or placements[layer.inputs[0]] is None:
            source = Geometry(*conv.in_shape, 1, conv.in_shape[1:])  # type: ignore[arg-type]
        ordinary = Geometry(*conv.out_shape, 1, conv.out_shape[1:])  # type: ignore[arg-type]
        options: list[tuple[Geometry, np.ndarray | None]] = [(ordinary, None)]
        if conv.stride[0] == conv.stride[1]:
            canvas = Geometry(*conv.out_shape, source.spacing * conv.stride[0],  # type: ignore[misc]
                              source.canvas)
            placed = canvas.placement()
            if placed is not None and period_of(placed, len(placed)) <= 2 * planning.slots:
                options.append((canvas, placed))
        after = _next_product(layers, layer.name)
        best: tuple[float, Geometry, np.ndarray | None] | None = None
        for geo, placed in options:
            own = (_gather_cost(layer.weights[0], placed, planning)
                   if layer is first and gathered(layer)
                   else _cost(layer.weights[0], placements[layer.inputs[0]], placed, planning))
            if after is not None:
                consumer, index = after
                own += _cost(consumer.weights[index], placed, None, planning)
            if best is None or own < best[0]:
                best = (own, geo, placed)
        assert best is not None
        _, geo, placed = best
        if placed is not None:
            placed.flags.writeable = False
        layer.placement = placed
        placements[layer.name] = placed
        geometry[layer.name] = geo
    return placements


def describe_products(layers: Sequence[Layer],
                      placements: dict[str, np.ndarray | None]) -> list[dict[str, Any]]:
    """Each product's periods and non-zero diagonals (the backend plans its rotation keys)."""
    described = []
    for layer in layers:
        if isinstance(layer, Affine):
            for name, weight in zip(layer.inputs, layer.weights, strict=True):
                period_in, period_out, ks = offsets(weight, placements[name], layer.placement)
                described.append({"period_in": period_in, "period_out": period_out,
                                  "offsets": ks})
    return described


def describe_gather(layer: Affine | None) -> dict[str, Any] | None:
    """The gather table of a sparse first product, JSON-safe (``LevelledRequirements.gather``)."""
    if not gathered(layer):
        return None
    assert layer is not None
    table, _ = gather_terms(layer.weights[0])
    return {
        "outputs": int(table.shape[0]),
        "terms": int(table.shape[1]),
        "table": encode_ints(table.ravel()),
        "placement": None if layer.placement is None else encode_ints(layer.placement),
    }
