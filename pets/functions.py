"""Non-linear functions on private tensors, written once on the core primitives.

A backend may compute any of these exactly or by its own protocol
(``Backend.function(name, ...)``: the plain backend uses numpy); otherwise the
approximation here runs on its ``+``, ``*`` and, where it can compare,
``less_than_zero``. Each approximation takes the ``interval`` its input is
known to lie in and sizes itself to it: fewer multiplications (MPC rounds,
HE levels) for a narrow interval, a bounded error inside it. Without an
interval a general default is used (``DEFAULT_INTERVALS``).

>>> import numpy as np, pets
>>> be = pets.backend("plain")
>>> x = be.encrypt(np.array([-1.0, 2.0]))
>>> be.decrypt(x.relu()).tolist(), be.decrypt(x > 0).tolist()
([0.0, 2.0], [0.0, 1.0])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.errors import ValueRangeError

if TYPE_CHECKING:
    from pets.tensor import PrivateTensor

__all__ = [
    "DEFAULT_INTERVALS",
    "compare",
    "exp",
    "inv_sqrt",
    "maximum",
    "reciprocal",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]

Interval = tuple[float, float]

#: the input range each approximation assumes when none is given
DEFAULT_INTERVALS: dict[str, Interval] = {
    "exp": (-16.0, 8.0),
    "reciprocal": (1.0, 256.0),
    "inv_sqrt": (1e-3, 64.0),
    "sigmoid": (-12.0, 12.0),
}

#: relative error the approximations aim for inside their interval (fixed-point MPC with
#: 16 fractional bits resolves 1.5e-5; CKKS at 40-bit scales far finer)
TARGET_ERROR = 1e-4


def _native(x: PrivateTensor, name: str, **options: Any) -> PrivateTensor | None:
    result = x.backend.function(name, x.data, **options)
    return None if result is None else x._wrap(result)


def _interval(name: str, interval: Interval | None) -> Interval:
    lo, hi = DEFAULT_INTERVALS[name] if interval is None else (
        float(interval[0]), float(interval[1])
    )
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueRangeError(f"{name}: interval must be finite with low < high, got {(lo, hi)}")
    return lo, hi


# ---- comparisons --------------------------------------------------------------------------


def _less_than_zero(x: PrivateTensor) -> PrivateTensor:
    return x._wrap(x.backend.less_than_zero(x.data))


def compare(x: PrivateTensor, other: Any, op: str) -> PrivateTensor:
    """Private 1.0 where ``x op other`` holds, else 0.0 (one comparison protocol)."""
    if op == "<":
        return _less_than_zero(x - other)
    if op == ">":
        return _less_than_zero(other - x)
    if op == "<=":
        return 1.0 - _less_than_zero(other - x)
    if op == ">=":
        return 1.0 - _less_than_zero(x - other)
    raise ValueError(f"unknown comparison {op!r}")


def relu(x: PrivateTensor) -> PrivateTensor:
    """``max(x, 0)`` exactly: ``x * (x >= 0)``, one comparison and one multiplication."""
    native = _native(x, "relu")
    return native if native is not None else x * (1.0 - _less_than_zero(x))


def maximum(x: PrivateTensor, axis: int | None = None) -> PrivateTensor:
    """The largest value over ``axis`` (all axes if ``None``), dropping it.

    A tree: ``ceil(log2 n)`` rounds of pairwise ``b + (a - b) * (a > b)``.
    """
    if axis is None:
        return maximum(x.reshape(-1), 0)
    ax = axis % x.ndim
    reduced = x.backend.function("max", x.data, axis=ax)
    if reduced is not None:
        return x._wrap(reduced, x.shape[:ax] + x.shape[ax + 1 :])
    moved = x if ax == x.ndim - 1 else x.transpose(
        *[i for i in range(x.ndim) if i != ax], ax
    )
    values = moved
    while values.shape[-1] > 1:
        half = values.shape[-1] // 2
        a, b = values[..., :half], values[..., half : 2 * half]
        best = b + (a - b) * compare(a, b, ">")
        if values.shape[-1] % 2:
            from pets.tensor import concat

            best = concat([best, values[..., 2 * half :]], axis=-1)
        values = best
    return values.reshape(values.shape[:-1])


# ---- exp, reciprocal, inverse square root ----------------------------------------------------


def _exp_plan(lo: float, hi: float) -> tuple[int, int]:
    """``(squarings k, Taylor degree d)``: ``e^x = p(x / 2^k)^(2^k)`` within TARGET_ERROR."""
    widest = max(abs(lo), abs(hi))
    best: tuple[int, int, int] | None = None
    for k in range(0, 16):
        t = widest / 2**k
        for d in range(2, 12):
            # Taylor remainder of e^t, relative, amplified 2^k times by the squarings
            error = 2**k * t ** (d + 1) / math.factorial(d + 1) * math.exp(t)
            if error <= TARGET_ERROR:
                cost = k + math.ceil(math.log2(d)) + 1
                if best is None or cost < best[0]:
                    best = (cost, k, d)
                break
    assert best is not None
    return best[1], best[2]


def exp(x: PrivateTensor, *, interval: Interval | None = None) -> PrivateTensor:
    """``e^x`` for ``x`` in ``interval``: a Taylor polynomial of ``x / 2^k``, squared ``k``
    times, with ``k`` and the degree chosen for the fewest multiplications within
    :data:`TARGET_ERROR` (relative) over the interval."""
    lo, hi = _interval("exp", interval)
    native = _native(x, "exp", interval=(lo, hi))
    if native is not None:
        return native
    k, degree = _exp_plan(lo, hi)
    scaled = x * 2.0**-k if k else x  # scale first: tiny coefficients would underflow fixed point
    result = scaled.polyval([1.0 / math.factorial(i) for i in range(degree + 1)])
    for _ in range(k):
        result = result.square()
    return result


def _iterations(name: str, lo: float, hi: float, start: Any, step: Any, truth: Any) -> int:
    """Newton steps until the relative error on a grid over ``[lo, hi]`` is below
    :data:`TARGET_ERROR` (simulated in float64 before anything private is touched)."""
    grid = np.geomspace(lo, hi, 2048)
    y, want = start(grid), truth(grid)
    for iterations in range(41):
        if np.max(np.abs(y - want) / want) <= TARGET_ERROR / 4:
            return iterations
        y = step(grid, y)
    raise ValueRangeError(
        f"{name} over {(lo, hi)} does not converge in 40 Newton steps; give a narrower interval"
    )


def reciprocal(x: PrivateTensor, *, interval: Interval | None = None) -> PrivateTensor:
    """``1 / x`` for ``x`` in a positive ``interval``: Newton's ``y <- y (2 - x y)`` from the
    minimax linear start for that interval (the error squares every step)."""
    lo, hi = _interval("reciprocal", interval)
    if lo <= 0:
        raise ValueRangeError(
            f"reciprocal needs a positive interval, got {(lo, hi)}; for values of either sign "
            "split off the sign first (x * sign(x))"
        )
    native = _native(x, "reciprocal", interval=(lo, hi))
    if native is not None:
        return native
    beta = 2.0 / (lo * hi + (lo + hi) ** 2 / 4)  # minimax linear start y0 = beta (lo + hi - x)
    steps = _iterations(
        "reciprocal", lo, hi, lambda g: beta * (lo + hi - g), lambda g, y: y * (2 - g * y),
        lambda g: 1 / g,
    )
    y = (x * -beta) + beta * (lo + hi)
    for _ in range(steps):
        y = y * (2.0 - x * y)
    return y


def inv_sqrt(x: PrivateTensor, *, interval: Interval | None = None) -> PrivateTensor:
    """``1 / sqrt(x)`` for ``x`` in a positive ``interval``: Newton's
    ``y <- y (3 - x y^2) / 2`` from a linear start fitted over the interval."""
    lo, hi = _interval("inv_sqrt", interval)
    if lo <= 0:
        raise ValueRangeError(f"inv_sqrt needs a positive interval, got {(lo, hi)}")
    native = _native(x, "inv_sqrt", interval=(lo, hi))
    if native is not None:
        return native
    grid = np.geomspace(lo, hi, 512)
    slope, intercept = (float(c) for c in np.polyfit(grid, 1 / np.sqrt(grid), 1, w=np.sqrt(grid)))
    line = slope * grid + intercept
    if np.any(line <= 0) or np.any(grid * line**2 >= 3):  # outside Newton's basin: start low
        slope, intercept = 0.0, 1.0 / math.sqrt(hi)
    steps = _iterations(
        "inv_sqrt", lo, hi, lambda g: slope * g + intercept,
        lambda g, y: y * (1.5 - 0.5 * g * y * y), lambda g: 1 / np.sqrt(g),
    )
    y = x * slope + intercept if slope else x * 0.0 + intercept
    for _ in range(steps):
        y = y * (1.5 - (x * 0.5) * y.square())
    return y


# ---- functions built on those ---------------------------------------------------------------


#: beyond this |x| a sigmoid's exponential leaves fixed point's range (e^8 ~ 3e3)
_SIGMOID_DIRECT = 8.0


def sigmoid(x: PrivateTensor, *, interval: Interval | None = None) -> PrivateTensor:
    """``1 / (1 + e^-x)`` for ``x`` in ``interval``.

    Where the backend compares and the interval is wide, it uses the symmetry
    ``sigmoid(x) = 1 - sigmoid(-x)``: one comparison gives ``|x|``, and
    ``1 / (1 + e^-|x|)`` needs ``e^-|x|`` in ``(0, 1]`` and a reciprocal over
    ``[1, 2]`` only, however wide the interval (e^16 would overflow fixed point).
    """
    lo, hi = _interval("sigmoid", interval)
    native = _native(x, "sigmoid", interval=(lo, hi))
    if native is not None:
        return native
    if x.backend.capabilities.comparisons and max(-lo, hi) > _SIGMOID_DIRECT:
        positive = 1.0 - _less_than_zero(x)  # 1 where x >= 0
        magnitude = x * (positive * 2.0 - 1.0)
        widest = max(-lo, hi)
        half = reciprocal(exp(-magnitude, interval=(-widest, 0.0)) + 1.0, interval=(1.0, 2.0))
        return (1.0 - half) + positive * (half * 2.0 - 1.0)
    denominator = exp(-x, interval=(-hi, -lo)) + 1.0
    return reciprocal(denominator, interval=(1.0 + math.exp(-hi), 1.0 + math.exp(-lo)))


def tanh(x: PrivateTensor, *, interval: Interval | None = None) -> PrivateTensor:
    """``tanh x = 2 sigmoid(2x) - 1``."""
    lo, hi = _interval("sigmoid", None if interval is None else (2 * interval[0], 2 * interval[1]))
    native = _native(x, "tanh", interval=(lo / 2, hi / 2))
    if native is not None:
        return native
    return sigmoid(x * 2.0, interval=(lo, hi)) * 2.0 - 1.0


def softmax(
    x: PrivateTensor, axis: int = -1, *, interval: Interval | None = None,
    subtract_max: bool = True,
) -> PrivateTensor:
    """``e^x / sum(e^x)`` over ``axis``.

    ``interval`` bounds the inputs (default: :data:`DEFAULT_INTERVALS` ``["exp"]``).
    With ``subtract_max`` (the default, and needed where inputs may be large) the
    maximum is taken by comparisons first, so the exponentials lie in ``[e^-w, 1]``
    for the interval's width ``w``; without it, no comparison runs (fewer MPC
    rounds) and the exponentials span the whole interval.
    """
    ax = axis % x.ndim
    lo, hi = _interval("exp", interval)
    native = _native(x, "softmax", axis=ax)
    if native is not None:
        return native
    n = x.shape[ax]
    if subtract_max:
        top = maximum(x, ax).reshape([1 if i == ax else s for i, s in enumerate(x.shape)])
        shifted, low, high = x - _broadcast(top, x.shape), lo - hi, 0.0
    else:
        shifted, low, high = x, lo, hi
    numerators = exp(shifted, interval=(low, high))
    total = numerators.sum(ax, keepdims=True)
    total_interval = (n * math.exp(low) if not subtract_max else 1.0, n * math.exp(high))
    scale = reciprocal(total, interval=(max(total_interval[0], 1e-6), total_interval[1]))
    return numerators * _broadcast(scale, x.shape)


def _broadcast(x: PrivateTensor, shape: tuple[int, ...]) -> PrivateTensor:
    """``x`` repeated to ``shape`` along its length-1 axes (a local operation)."""
    if x.shape == tuple(shape):
        return x
    return x._wrap(x.backend.broadcast_to(x.data, x.shape, tuple(shape)), shape)
