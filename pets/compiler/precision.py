"""What a compiled model needs from a levelled backend: value bounds, noise gain, precision.

Three questions, answered in the clear at compile time:

* **How large can values get?** For inputs inside the calibrated input range
  (``|x| <= input_bound``, which ``model.encrypt`` checks), every layer's output
  and every value computed on the way is bounded *soundly*, by the same rules a
  backend that tracks bounds applies (CKKS: matrix products by the largest
  column sum of ``|W|``, products by the product of the bounds, polynomials by
  ``sum |c_k| b^k``). Where sound bounds grow beyond what any secure parameters
  hold (deep polynomial models), the model vouches instead for its calibrated
  range times :data:`HEADROOM` (and for what feeds an approximation, at most
  1.25 times its interval, where the approximation holds), and says so.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pets.compiler.layers import Affine, Layer, Polynomial

__all__ = [
    "HEADROOM",
    "ApproximationWarning",
    "RangePlan",
    "noise_gain",
    "plan_ranges",
    "target_precision",
]

#: how far a model trusts its calibration when it vouches for a layer's range
HEADROOM = 4.0
#: sound bounds up to this are held as they are (a 60-bit first prime at a 25-bit scale)
SOUND_LIMIT = 2.0**30
#: default precision, relative to the largest output on the example input
DEFAULT_RELATIVE_PRECISION = 1e-3


class ApproximationWarning(UserWarning):
    """A polynomial stand-in for an activation is far from it on the calibrated range."""


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

    # a polynomial's approximation holds on its interval only: what feeds it is vouched for
    # no wider than 1.25 times that interval
    interval_limit: dict[str, float] = {}
    for layer in layers:
        if isinstance(layer, Polynomial) and layer.approximation is not None:
            reach = 1.25 * max(abs(layer.interval[0]), abs(layer.interval[1]))
            for name in layer.inputs:
                interval_limit[name] = min(interval_limit.get(name, math.inf), reach)

    def run(vouch: bool) -> RangePlan:
        bounds = {input_name: input_bound}
        largest, vouched = input_bound, []
        for layer in layers:
            out, inner = layer.bound([bounds[i] for i in layer.inputs])
            largest = max(largest, inner)
            trusted = min(HEADROOM * calibrated[layer.name],
                          interval_limit.get(layer.name, math.inf))
            if vouch and out > trusted:
                out = trusted
                vouched.append(layer.name)
            bounds[layer.name] = out
        return RangePlan(input_bound, bounds, largest, tuple(vouched))

    sound = run(vouch=False)
    if sound.largest <= SOUND_LIMIT:
        return sound
    return run(vouch=True)


def noise_gain(layers: Sequence[Layer], input_name: str, output_name: str,
               example: np.ndarray, *, samples: int = 32, seed: int = 0) -> dict[str, float]:
    """Output error per unit of noise added at the input and after each layer, measured.

    CKKS noise is random, so it is simulated: the model runs in the clear on (up to
    ``samples`` rows of) the example input, once per source, with Gaussian noise of a
    tiny standard deviation ``e`` added at that source (times the input's L2 norm after a
    product by plaintext weights, whose encoding errors it multiplies); the largest change
    of any output, divided by ``e``, is that source's gain. Independent sources add in quadrature
    (``"total"``); each source's share is kept under its name (``input`` or a layer's
    name), so a report can name the layer that costs the most.
    """
    flat = np.asarray(example[:samples], dtype=np.float64)
    rng = np.random.default_rng(seed)
    names = [input_name, *[layer.name for layer in layers]]

    def run(source: str | None, size: float) -> np.ndarray:
        values = {input_name: flat}
        if source == input_name:
            values[input_name] = flat + rng.normal(0.0, size, flat.shape)
        for layer in layers:
            inputs = [values[i] for i in layer.inputs]
            out, _ = layer.simulate(inputs)
            if layer.name == source:
                out = out + rng.normal(0.0, size, out.shape) * _noise_scale(layer, inputs)
            values[layer.name] = out
        return values[output_name]

    clean = run(None, 0.0)
    size = 1e-7
    shares = {}
    for source in names:
        shares[source] = float(np.max(np.abs(run(source, size) - clean), initial=0.0)) / size
    shares["total"] = float(np.sqrt(sum(v * v for v in shares.values())))
    return shares


def _noise_scale(layer: Layer, inputs: Sequence[np.ndarray]) -> np.ndarray | float:
    """How much fresh noise a layer adds, per sample, in units of one operation's noise.

    A product by plaintext weights adds each weight's encoding error times its input:
    independent errors, so their sum grows with the input's L2 norm.
    """
    if isinstance(layer, Affine):
        squares = sum(np.sum(np.square(x), axis=-1, keepdims=True) for x in inputs)
        return 1.0 + np.sqrt(squares)
    return 1.0


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
