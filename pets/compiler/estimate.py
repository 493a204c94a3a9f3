"""What a packing will cost before it runs: seconds and bytes, from counts and measured costs.

A levelled backend reports what one operation costs on its keys
(``operation_costs``: seconds per plaintext product, rotation, product, and the
bytes of a ciphertext and a plaintext per level). The model counts what each
packing does with its layers:

* **batched**: one ciphertext per feature and chunk of ``slots`` samples; a
  product is a plaintext scalar product per non-zero weight, an element-wise
  layer one operation per feature. Memory: the ciphertexts of a layer's input
  and output, alive together.
* **per-sample**: one ciphertext per sample (a few for a gathered input); a
  product is a plaintext product per non-zero diagonal and a rotation per baby
  and giant step (:mod:`pets.slots`). Memory: every sample's ciphertexts, the
  baby steps of one product, and the encoded diagonals (kept for reuse).

``model.encrypt`` uses the estimates to pick a packing that fits in memory and
finishes first, or refuses with them; ``model.estimate(rows)`` shows them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.compiler.layers import Affine, Polynomial
from pets.compiler.placement import first_product_layer, offsets
from pets.polynomial import depth as polynomial_depth
from pets.slots import SparseMatrix, gather_terms, period_of, plan_diagonals

if TYPE_CHECKING:
    from pets.compiler.model import PrivateModel

__all__ = ["Estimate", "PackingWarning", "available_memory", "estimate"]


class PackingWarning(UserWarning):
    """A compiled model received an input packed in a way that is slow for it."""


@dataclass(frozen=True)
class Estimate:
    """Predicted cost of running a model on ``rows`` samples in one packing."""

    layout: str
    rows: int
    seconds: float
    memory_bytes: float

    def __str__(self) -> str:
        return (f"{self.layout} packing of {self.rows} samples: about {self.seconds:.3g} s and "
                f"{self.memory_bytes / 2**30:.2f} GiB")


def available_memory() -> float:
    """Bytes this machine can still give (MemAvailable), or ``inf`` where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _nonzeros(weight: np.ndarray | SparseMatrix) -> int:
    return weight.nnz if isinstance(weight, SparseMatrix) else int(np.count_nonzero(weight))


def estimate(model: PrivateModel, rows: int, layout: str, costs: dict[str, Any]) -> Estimate:
    """The cost of ``model`` on ``rows`` samples packed as ``layout`` (see the module)."""
    seconds = costs["seconds"]
    slots = int(costs["slots"])
    top = int(costs["top"])
    ct_bytes = costs["ciphertext_bytes"]
    pt_bytes = costs["plaintext_bytes"]
    levels = model.levels()
    sizes = {model._input_name: model.input_size}
    time = 0.0
    peak = 0.0
    cache = 0.0
    def at(level: int) -> float:
        """Operations cost about in proportion to the primes left (measured at the top)."""
        return (level + 1) / (top + 1)

    if layout == "batched":
        chunks = -(-rows // slots)
        time += chunks * model.input_size * seconds["encrypt"]
        for layer in model.layers:
            level = max(0, top - levels[layer.name])
            if isinstance(layer, Affine):
                out = layer.weights[0].shape[1]
                work = sum(_nonzeros(w) for w in layer.weights) * seconds["scalar_multiply"]
            else:
                out = sizes[layer.inputs[0]]
                steps = (polynomial_depth(layer.coefficients) + len(layer.coefficients)
                         if isinstance(layer, Polynomial) else 1)
                work = out * steps * seconds["multiply"]
            sizes[layer.name] = out
            alive = sum(sizes[i] for i in layer.inputs) + out
            peak = max(peak, alive * chunks * ct_bytes[min(level + 1, top)])
            time += chunks * work * at(level + 1)
        return Estimate(layout, rows, time, peak)
    first = first_product_layer(model.layers, model._input_name)
    gathered = model.levelled_requirements.gather is not None
    per_input = 1
    if gathered and isinstance(first, Affine):
        table, _ = gather_terms(first.weights[0])
        period = period_of(first.placement, first.weights[0].shape[1])
        per_input = -(-table.shape[1] // max(1, slots // period))
    time += rows * per_input * seconds["encrypt"]
    babies = 0
    for layer in model.layers:
        level = max(0, top - levels[layer.name] + 1)
        if isinstance(layer, Affine):
            for name, weight in zip(layer.inputs, layer.weights, strict=True):
                if layer is first and gathered:
                    time += rows * per_input * seconds["multiply_plain"]
                    cache += per_input * pt_bytes[min(level, top)]
                    continue
                period_in, period_out, ks = offsets(weight, model.placements.get(name),
                                                    layer.placement)
                if max(period_in, period_out) > slots:
                    return Estimate(layout, rows, float("inf"), float("inf"))
                plan = plan_diagonals(period_in, period_out, ks)
                rotations = len(plan.babies) + len(plan.giants) + len(plan.folds)
                time += rows * at(level) * (len(ks) * seconds["multiply_plain"] + rotations
                                            * seconds["rotate"])
                time += len(ks) * seconds["encode"]  # once: the diagonals are cached
                cache += len(ks) * pt_bytes[min(level, top)]
                babies = max(babies, len(plan.babies))
        elif isinstance(layer, Polynomial):
            time += rows * at(level) * seconds["multiply"] * (
                polynomial_depth(layer.coefficients) + len(layer.coefficients))
        else:
            time += rows * at(level) * seconds["multiply"]
    peak = rows * (per_input + 2) * ct_bytes[top] + (babies + 2) * ct_bytes[top] + cache
    return Estimate(layout, rows, time, peak)
