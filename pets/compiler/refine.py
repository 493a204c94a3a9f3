"""Approximations good enough for the precision asked, and a warning when they are not.

With ``pets.compile(..., precision=...)`` the polynomial stand-ins are refined
until the compiled model agrees with torch on the example input: within half
the precision (the other half is left to the encryption noise), or with the
same predictions for ``precision="predictions"``. Each round raises the degree
of the approximation that is furthest off on the example, up to
:data:`MAX_DEGREE`. Whatever the precision, an approximation far from its
activation (more than :data:`WARN_SHARE` of the activation's range over its
interval, or beyond the precision asked) is an :class:`ApproximationWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from torch import fx

from pets.compiler.build import Program, build
from pets.compiler.graph import TracedModel
from pets.compiler.layers import Polynomial
from pets.compiler.lowering import Lowering
from pets.compiler.lowerings import CompileOptions
from pets.compiler.precision import ApproximationWarning, target_precision

__all__ = ["build_within", "simulate_program"]

#: the highest degree refinement goes to (degree 8 costs 4 levels)
MAX_DEGREE = 8
#: an approximation off by more than this share of its activation's range is a warning
WARN_SHARE = 0.1


def simulate_program(program: Program, flat: np.ndarray) -> np.ndarray:
    """The program's arithmetic in float64 on flattened inputs."""
    values = {program.input_name: flat}
    for layer in program.layers:
        values[layer.name], _ = layer.simulate([values[i] for i in layer.inputs])
    return values[program.output_name]


def _agrees(out: np.ndarray, expected: np.ndarray, precision: float | str, target: float
            ) -> bool:
    if precision == "predictions" and expected.shape[1] > 1:
        return bool(np.array_equal(out.argmax(axis=1), expected.argmax(axis=1)))
    return float(np.max(np.abs(out - expected), initial=0.0)) <= target / 2


def build_within(
    traced: TracedModel, lowerings: Mapping[fx.Node, Lowering], options: CompileOptions,
    precision: float | str | None, expected: np.ndarray, flat: np.ndarray,
) -> Program:
    """:func:`build`, then refine the approximations for ``precision`` (see the module
    docstring); warns about approximations that stay far off."""
    program = build(traced, lowerings, options)
    target = target_precision(precision, expected)
    if precision is not None:
        for _ in range(3 * MAX_DEGREE):
            layers = [layer for layer in program.layers
                      if isinstance(layer, Polynomial) and layer.approximation is not None]
            out = simulate_program(program, flat)
            if not layers or _agrees(out, expected, precision, target):
                break
            candidates = [layer for layer in layers
                          if layer.approximation is not None
                          and layer.approximation.degree < MAX_DEGREE]
            if not candidates:
                break
            worst = max(candidates, key=lambda layer: layer.approximation.calibration_error
                        if layer.approximation else 0.0)
            assert worst.approximation is not None
            degrees = {**options.degrees, worst.approximation.where:
                       worst.approximation.degree + 1}
            options = replace(options, degrees=degrees)
            program = build(traced, lowerings, options)
        out = simulate_program(program, flat)
        if not _agrees(out, expected, precision, target):
            warnings.warn(
                f"the approximated model differs from torch by up to "
                f"{float(np.max(np.abs(out - expected))):.2g} on the example input, beyond the "
                f"precision asked ({precision!r}), even at degree {MAX_DEGREE}; narrow the "
                "activations' ranges (ranges=...), or replace the activations with "
                "pets.nn.Square and retrain",
                ApproximationWarning, stacklevel=4,
            )
    for layer in program.layers:
        approximation = layer.approximation if isinstance(layer, Polynomial) else None
        if approximation is None:
            continue
        lo, hi = approximation.interval
        grid = np.linspace(lo, hi, 257)
        spread = float(np.ptp(np.polynomial.polynomial.polyval(grid, approximation.coefficients)))
        limit = WARN_SHARE * max(spread, 1e-12)
        if approximation.max_error > limit or (precision is not None and
                                               approximation.max_error > target):
            higher = (
                f"raise its degree (degrees={{{approximation.where!r}: "
                f"{min(approximation.degree + 2, MAX_DEGREE)}}}), pass precision= to compile "
                "(it raises degrees until the model agrees with torch on the example input), "
                if approximation.degree < MAX_DEGREE else ""
            )
            warnings.warn(
                f"{approximation.where}: the degree-{approximation.degree} polynomial standing in "
                f"for {approximation.function} is off by up to {approximation.max_error:.2g} on "
                f"[{lo:.3g}, {hi:.3g}]; {higher}narrow its range (ranges=...), or replace the "
                "activation with pets.nn.Square and retrain",
                ApproximationWarning, stacklevel=4,
            )
    return program
