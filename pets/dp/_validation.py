"""Checks on DP parameters and data, each failing with a message that names the fix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.errors import DPConfigurationError, NonFiniteValueError

__all__ = [
    "MAX_FLOAT_SCALE",
    "as_array",
    "as_float",
    "check_delta",
    "check_epsilon",
    "check_noise_scale",
    "check_positive",
    "check_released",
    "check_sensitivity",
]

MAX_FLOAT_SCALE = 1e300
"""Largest noise scale for float data: beyond it ``x + noise`` overflows float64."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def as_float(value: object) -> float | None:
    """``value`` as a float (an int too large for one becomes +-inf), or None if not a number."""
    if not _is_number(value):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_epsilon(epsilon: object, *, name: str = "epsilon") -> float:
    """Return ``epsilon`` as a float if it is a finite number > 0."""
    value = as_float(epsilon)
    if value is None or math.isnan(value):
        raise DPConfigurationError(
            f"{name} must be a number > 0, got {epsilon!r}. "
            f"Fix: pass the privacy-loss parameter as a positive float, e.g. {name}=1.0."
        )
    if value <= 0 or math.isinf(value):
        raise DPConfigurationError(
            f"{name} must be finite and > 0, got {value!r}. "
            f"Fix: pass a positive finite {name} (smaller means more privacy, more noise)."
        )
    return value


def check_delta(delta: object, *, name: str = "delta", allow_zero: bool = True) -> float:
    """Return ``delta`` as a float if it lies in [0, 1) (or (0, 1) without ``allow_zero``)."""
    interval = "[0, 1)" if allow_zero else "(0, 1)"
    value = as_float(delta)
    if value is None or math.isnan(value):
        raise DPConfigurationError(
            f"{name} must be a number in {interval}, got {delta!r}. "
            f"Fix: pass e.g. {name}=1e-5, well below 1/(number of records)."
        )
    if not (0.0 <= value < 1.0) or (value == 0.0 and not allow_zero):
        raise DPConfigurationError(
            f"{name} must be in {interval}, got {value!r}. "
            f"Fix: pass e.g. {name}=1e-5, well below 1/(number of records)."
        )
    return value


def check_positive(value: object, *, name: str, fix: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0."""
    number = as_float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise DPConfigurationError(f"{name} must be a finite number > 0, got {value!r}. Fix: {fix}")
    return number


def check_sensitivity(sensitivity: object) -> float:
    """Return ``sensitivity`` as a float if it is finite and > 0."""
    return check_positive(
        sensitivity,
        name="sensitivity",
        fix="pass the most one person's data can change the result "
        "(bound it with pets.dp.clip_values or pets.dp.clip_l2).",
    )


def as_array(values: Any, *, name: str = "x") -> npt.NDArray[Any]:
    """Convert scalars, lists, numpy arrays or torch tensors to a real numeric numpy array.

    Strings, ragged lists, Python objects and complex numbers are refused (a complex
    value would otherwise lose its imaginary part silently). torch is not imported.
    """
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch.Tensor
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as exc:  # ragged nesting, unconvertible objects
        raise DPConfigurationError(
            f"{name} must be numeric, got {type(values).__name__} that numpy cannot turn into "
            f"one array ({exc}). Fix: pass a numpy array, a list of numbers of equal lengths "
            "or a torch tensor."
        ) from None
    if array.dtype.kind not in "biuf":
        kind = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes"}
        raise DPConfigurationError(
            f"{name} must be numeric, got an array of "
            f"{kind.get(array.dtype.kind, f'dtype {array.dtype}')}. Fix: pass real numbers "
            "(a numpy array, a list of numbers or a torch tensor); for complex values, noise "
            "the real and imaginary parts as two arrays."
        )
    return array


def check_finite(array: npt.NDArray[Any], *, name: str = "x") -> None:
    """Raise ``NonFiniteValueError`` if ``array`` holds NaN or infinity."""
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise NonFiniteValueError(
            f"{name} holds NaN or infinity, which no amount of noise can protect. "
            "Fix: drop or impute those values and clip the rest before adding noise."
        )


def check_noise_scale(scale: float, *, limit: float, what: str) -> float:
    """Return ``scale`` if it is finite and at most ``limit``, else say which setting to change.

    Checked when a mechanism is built, before any budget is charged, so that a
    calibration beyond what the number type can hold is refused up front.
    """
    if not (math.isfinite(scale) and 0 < scale <= limit):
        raise DPConfigurationError(
            f"the {what} noise scale would be {scale!r}, beyond the {limit:.3g} that the "
            "noisy values can hold. Fix: raise epsilon (or delta), or lower the sensitivity "
            "by clipping (pets.dp.clip_values); at this scale the noise would drown any result."
        )
    return scale


def check_released(values: npt.NDArray[Any], *, what: str) -> npt.NDArray[Any]:
    """Raise if noisy ``values`` overflowed their number type (checked on the output only).

    The check reads only the noisy result, so refusing it is post-processing: it
    reveals nothing beyond what releasing the result would.
    """
    overflowed = (
        ~np.isfinite(values)
        if values.dtype.kind == "f"
        else (values == np.iinfo(values.dtype).max) | (values == np.iinfo(values.dtype).min)
    )
    if np.any(overflowed):
        raise DPConfigurationError(
            f"the noisy {what} overflowed its number type (a value reached the largest "
            "representable magnitude), so the release would be wrong. Nothing is returned. "
            "Fix: clip the data to a sensible range first (pets.dp.clip_values) and use "
            "ordinary privacy parameters."
        )
    return values
