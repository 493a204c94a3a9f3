"""What a compiled model needs from a levelled backend: value bounds, noise gain, precision.

Three questions, answered in the clear at compile time:

* **How large can values get?** For inputs inside the calibrated input range
  (``|x| <= input_bound``, which ``model.encrypt`` checks), every layer's output
  and every value computed on the way is bounded *soundly*, by the same rules a
  backend that tracks bounds applies (CKKS: matrix products by the largest
  column sum of ``|W|``, products by the product of the bounds, polynomials by
  ``sum |c_k| b^k``). Where sound bounds grow beyond what any secure parameters
  hold (deep polynomial models), the model vouches instead for its calibrated
  range times :data:`HEADROOM`, and says so.
* **How much does the model amplify noise?** One unit of error injected at the
  input and after every layer, propagated with each layer's error bound, gives
  the output error per unit of noise (the *noise gain*): the backend picks the
  smallest scale whose noise times the gain meets the precision.
* **How precise must the output be?** ``precision`` (an absolute error), or
  ``"predictions"``: half the smallest margin between the two largest outputs
  on the example input, so every example's prediction survives the noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pets.compiler.layers import Layer

__all__ = [
    "HEADROOM",
    "ApproximationWarning",
    "InputRangeWarning",
    "RangePlan",
    "noise_gain",
    "plan_ranges",
    "target_precision",
]

#: how far a model trusts its calibration when it vouches for a layer's range
HEADROOM = 8.0
#: sound bounds up to this are held as they are (a 60-bit first prime at a 25-bit scale)
SOUND_LIMIT = 2.0**30
#: default precision, relative to the largest output on the example input
DEFAULT_RELATIVE_PRECISION = 1e-3


class ApproximationWarning(UserWarning):
    """A polynomial stand-in for an activation is far from it on the calibrated range."""


class InputRangeWarning(UserWarning):
    """Inputs outside the range a compiled model was calibrated for (``check_range="warn"``)."""


@dataclass(frozen=True)
class RangePlan:
    """Bounds on every layer's values for inputs with ``|x| <= input_bound``."""

    input_bound: float
    #: a bound on each layer's ``|output|`` the run will carry (sound unless vouched)
    bounds: Mapping[str, float]
    #: the largest value any layer may produce, intermediate values included
    largest: float
    #: layers whose bound is their calibrated range times HEADROOM rather than a sound bound
    vouched: tuple[str, ...]


def plan_ranges(
    layers: Sequence[Layer], input_name: str, input_bound: float,
    calibrated: Mapping[str, float],
) -> RangePlan:
    """Sound bounds through ``layers``; vouch for calibrated ranges only where sound ones are
    too large to hold (beyond :data:`SOUND_LIMIT`)."""

    def run(vouch: bool) -> RangePlan:
        bounds = {input_name: input_bound}
        largest, vouched = input_bound, []
        for layer in layers:
            out, inner = layer.bound([bounds[i] for i in layer.inputs])
            largest = max(largest, inner)
            if vouch and out > HEADROOM * calibrated[layer.name]:
                out = HEADROOM * calibrated[layer.name]
                vouched.append(layer.name)
            bounds[layer.name] = out
        return RangePlan(input_bound, bounds, largest, tuple(vouched))

    sound = run(vouch=False)
    if sound.largest <= SOUND_LIMIT:
        return sound
    return run(vouch=True)


def noise_gain(layers: Sequence[Layer], input_name: str, output_name: str) -> dict[str, float]:
    """Output error per unit of noise injected at the input and after each layer.

    Returns the total under ``"total"`` and each source's share under its name
    (``input`` or a layer's name), so a report can name the layer that costs the most.
    """
    names = [input_name, *[layer.name for layer in layers]]
    shares: dict[str, float] = {}
    for source in names:
        errors = {input_name: 1.0 if source == input_name else 0.0}
        for layer in layers:
            errors[layer.name] = layer.error_bound([errors[i] for i in layer.inputs]) + (
                1.0 if layer.name == source else 0.0
            )
        shares[source] = errors[output_name]
    shares["total"] = float(sum(shares.values()))
    return shares


def target_precision(precision: float | str | None, expected: np.ndarray) -> float:
    """The absolute output error to aim for (see the module docstring)."""
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    if precision is None:
        return DEFAULT_RELATIVE_PRECISION * scale
    if precision == "predictions":
        flat = expected.reshape(len(expected), -1)
        if flat.shape[1] < 2:
            return DEFAULT_RELATIVE_PRECISION * scale
        top = np.sort(flat, axis=1)[:, -2:]
        margin = float(np.min(top[:, 1] - top[:, 0]))
        return max(margin / 2.0, 1e-7 * scale)
    if isinstance(precision, str) or not (math.isfinite(precision) and precision > 0):
        raise ValueError(
            f"precision must be a positive number (the largest output error to accept) or "
            f"'predictions', got {precision!r}"
        )
    return float(precision)


def warn_approximation(where: str, function: str, error: float, target: float) -> None:
    """Warn when an activation's stand-in is off by more than the precision asked for."""
    warnings.warn(
        f"{where}: the polynomial standing in for {function} is off by up to {error:.2g} on its "
        f"range, more than the precision {target:.2g}; raise its degree (degrees={{"
        f"{function!r}: ...}}), narrow its range (ranges=...), or replace the activation with "
        "pets.nn.Square",
        ApproximationWarning,
        stacklevel=4,
    )
