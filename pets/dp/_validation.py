"""Checks on DP parameters and data, each failing with a message that names the fix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.errors import DPConfigurationError, NonFiniteValueError

__all__ = [
    "as_array",
    "check_delta",
    "check_epsilon",
    "check_positive",
    "check_sensitivity",
]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_epsilon(epsilon: object, *, name: str = "epsilon") -> float:
    """Return ``epsilon`` as a float if it is a finite number > 0."""
    if not _is_number(epsilon) or math.isnan(float(epsilon)):  # type: ignore[arg-type]
        raise DPConfigurationError(
            f"{name} must be a number > 0, got {epsilon!r}. "
            f"Fix: pass the privacy-loss parameter as a positive float, e.g. {name}=1.0."
        )
    value = float(epsilon)  # type: ignore[arg-type]
    if value <= 0 or math.isinf(value):
        raise DPConfigurationError(
            f"{name} must be finite and > 0, got {value!r}. "
            f"Fix: pass a positive finite {name} (smaller means more privacy, more noise)."
        )
    return value


def check_delta(delta: object, *, name: str = "delta", allow_zero: bool = True) -> float:
    """Return ``delta`` as a float if it lies in [0, 1) (or (0, 1) without ``allow_zero``)."""
    interval = "[0, 1)" if allow_zero else "(0, 1)"
    if not _is_number(delta) or math.isnan(float(delta)):  # type: ignore[arg-type]
        raise DPConfigurationError(
            f"{name} must be a number in {interval}, got {delta!r}. "
            f"Fix: pass e.g. {name}=1e-5, well below 1/(number of records)."
        )
    value = float(delta)  # type: ignore[arg-type]
    if not (0.0 <= value < 1.0) or (value == 0.0 and not allow_zero):
        raise DPConfigurationError(
            f"{name} must be in {interval}, got {value!r}. "
            f"Fix: pass e.g. {name}=1e-5, well below 1/(number of records)."
        )
    return value


def check_positive(value: object, *, name: str, fix: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0."""
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise DPConfigurationError(f"{name} must be a finite number > 0, got {value!r}. Fix: {fix}")
    return float(value)  # type: ignore[arg-type]


def check_sensitivity(sensitivity: object) -> float:
    """Return ``sensitivity`` as a float if it is finite and > 0."""
    return check_positive(
        sensitivity,
        name="sensitivity",
        fix="pass the most one person's data can change the result "
        "(bound it with pets.dp.clip_values or pets.dp.clip_l2).",
    )


def as_array(values: Any, *, name: str = "x") -> npt.NDArray[Any]:
    """Convert scalars, lists, numpy arrays or torch tensors to a numpy array (no torch import)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch.Tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object:
        raise DPConfigurationError(
            f"{name} must be numeric, got an array of Python objects. "
            "Fix: pass a numpy array, a list of numbers or a torch tensor."
        )
    return array


def check_finite(array: npt.NDArray[Any], *, name: str = "x") -> None:
    """Raise ``NonFiniteValueError`` if ``array`` holds NaN or infinity."""
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise NonFiniteValueError(
            f"{name} holds NaN or infinity, which no amount of noise can protect. "
            "Fix: drop or impute those values and clip the rest before adding noise."
        )
