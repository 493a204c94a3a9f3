"""Clipping: bound what one person can change, so that noise can be calibrated to it.

Noise protects only up to the stated *sensitivity*. These helpers enforce a
sensitivity instead of assuming one:

========================  ==========================================================
after                     sensitivity of the released statistic
========================  ==========================================================
``clip_values(x, a, b)``  ``sum``: ``max(|a|, |b|)`` (add/remove one person, L1 and L2);
                          ``b - a`` (replace one person). ``mean`` over a public
                          ``n``: those divided by ``n``.
``clip_l2(rows, C)``      ``sum`` of rows: ``C`` in L2 (add/remove one row); ``2 C``
                          (replace one row). In L1 a clipped row can move the sum by
                          up to ``sqrt(d) * C`` for ``d`` columns.
========================  ==========================================================
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pets.dp._validation import as_array, check_finite, check_positive
from pets.errors import DPConfigurationError

__all__ = ["clip_l2", "clip_values"]


def clip_values(x: Any, lower: float, upper: float) -> npt.NDArray[np.float64]:
    """Clamp every value into ``[lower, upper]``.

    A sum of clipped values has sensitivity ``max(|lower|, |upper|)`` when one
    person is added or removed, ``upper - lower`` when one is replaced.

    >>> import pets.dp
    >>> pets.dp.clip_values([-5.0, 0.5, 9.0], 0.0, 1.0).tolist()
    [0.0, 0.5, 1.0]
    """
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lower, upper)):
        raise DPConfigurationError(
            f"lower and upper must be finite numbers, got lower={lower!r}, upper={upper!r}. "
            "Fix: pass public bounds chosen without looking at the data."
        )
    if not lower < upper:
        raise DPConfigurationError(
            f"lower must be < upper, got lower={lower!r}, upper={upper!r}. "
            "Fix: pass bounds with lower < upper."
        )
    values = as_array(x).astype(np.float64)
    if np.any(np.isnan(values)):
        check_finite(values)
    return np.clip(values, lower, upper)


def clip_l2(rows: Any, max_norm: float) -> npt.NDArray[np.float64]:
    """Scale each row (first axis) down so that its L2 norm is at most ``max_norm``.

    The sum of the clipped rows has L2 sensitivity ``max_norm`` under adding or
    removing one row (``2 * max_norm`` under replacing one): the value to give
    :class:`pets.dp.GaussianMechanism` as ``sensitivity``.

    >>> import numpy as np, pets.dp
    >>> clipped = pets.dp.clip_l2(np.array([[3.0, 4.0], [0.3, 0.4]]), 1.0)
    >>> np.linalg.norm(clipped, axis=1).round(6).tolist()
    [1.0, 0.5]
    """
    max_norm = check_positive(
        max_norm, name="max_norm", fix="pass the largest L2 norm one row may have, e.g. 1.0."
    )
    values = as_array(rows, name="rows").astype(np.float64)
    check_finite(values, name="rows")
    if values.ndim == 0:
        raise DPConfigurationError(
            "rows must have at least one dimension (one row per person). "
            "Fix: pass a 1-d array of scalars or a 2-d array of rows."
        )
    if values.size == 0:
        return values
    flat = values.reshape(values.shape[0], -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    factors = np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(np.float64).tiny))
    clipped: npt.NDArray[np.float64] = (flat * factors).reshape(values.shape)
    return clipped
