"""Vectorised secure noise from OpenDP's samplers.

Every continuous or discrete Laplace/Gaussian draw in ``pets.dp`` comes from
here. OpenDP's float mechanisms round the input to a grid of width ``2**k``,
add *exact* discrete Laplace or discrete Gaussian noise in units of ``2**k``
(sampled with integer arithmetic from the operating system's CSPRNG) and
round the result back to a float. That construction (Mironov 2012; Canonne,
Kamath & Steinke 2020) has no floating-point holes for an attacker to read
the input through, which naive ``numpy.random.laplace`` noise does.

Speed: OpenDP spends ~7 µs (Laplace) to ~12 µs (Gaussian) per value in its
exact samplers, so long vectors are cut into chunks of :data:`CHUNK` values
that run on a thread pool (the OpenDP call releases the GIL). Measurements
are built once per (kind, scale, k, chunk length) and reused.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pets.dp._imports import require, require_opendp
from pets.errors import DPConfigurationError

__all__ = [
    "CHUNK",
    "float_measurement",
    "int_measurement",
    "GRID_BITS",
    "Kind",
    "grid_exponent",
    "guarded",
    "opendp_failure",
    "sample_float",
    "sample_int",
]

Kind = Literal["laplace", "gaussian"]

CHUNK = 8192
"""Values per OpenDP call; chunks run in parallel."""

GRID_BITS = 40
"""The noise grid is ``2**-GRID_BITS`` times the noise scale (or the sensitivity, if
smaller): fine enough to be invisible in any result, coarse enough to keep OpenDP's
exact samplers fast."""


def grid_exponent(scale: float, sensitivity: float | None = None) -> int:
    """The ``k`` of OpenDP's ``2**k`` output grid for noise of ``scale`` on data of ``sensitivity``.

    The grid is ``2**-GRID_BITS`` of the smaller of the two: fine against the noise,
    and fine against the sensitivity, so that rounding the input to the grid (paid
    for by widening the noise by ``n * 2**k / sensitivity``) stays negligible even
    when epsilon is tiny and the scale huge.
    """
    unit = scale if sensitivity is None else min(scale, sensitivity)
    return math.floor(math.log2(unit)) - GRID_BITS


def opendp_failure(exc: BaseException, *, what: str, fix: str) -> DPConfigurationError:
    """A ``DPConfigurationError`` for an OpenDP refusal (overflow, parameters out of its range)."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return DPConfigurationError(f"OpenDP cannot {what}: {detail}. Fix: {fix}")


def _opendp_exception() -> type[BaseException]:
    module = require("opendp.mod", purpose="secure noise sampling")
    error: type[BaseException] = module.OpenDPException
    return error


def guarded(call: Any, *, what: str, fix: str) -> Any:
    """Run ``call()``; an OpenDP error becomes a ``DPConfigurationError`` naming ``fix``."""
    try:
        return call()
    except (_opendp_exception(), OverflowError) as exc:
        raise opendp_failure(exc, what=what, fix=fix) from exc


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="pets-dp")


@lru_cache(maxsize=256)
def _float_measurement(kind: Kind, scale: float, k: int, length: int) -> Any:
    dp = require_opendp()
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=length)
    if kind == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=scale, k=k)
    return dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale, k=k)


@lru_cache(maxsize=256)
def _int_measurement(kind: Kind, scale: float, length: int) -> Any:
    dp = require_opendp()
    domain = dp.vector_domain(dp.atom_domain(T="i64"), size=length)
    if kind == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale)


def float_measurement(kind: Kind, scale: float, k: int, length: int) -> Any:
    """The OpenDP measurement adding continuous ``kind`` noise to ``length`` floats."""
    return _float_measurement(kind, scale, k, length)


def int_measurement(kind: Kind, scale: float, length: int = 1) -> Any:
    """The OpenDP measurement adding discrete ``kind`` noise to ``length`` integers."""
    return _int_measurement(kind, scale, length)


_SAMPLE_FIX = (
    "keep epsilon, delta and sensitivity within ordinary ranges (e.g. epsilon between "
    "1e-6 and 1e3) so that the noise scale and the noisy values fit in 64-bit numbers"
)


def _run_chunks(flat: npt.NDArray[Any], build: Any, *, kind: Kind, scale: float) -> list[Any]:
    what = f"sample {kind} noise of scale {scale!r}"
    starts = range(0, flat.size, CHUNK)
    pieces = [flat[start : start + CHUNK] for start in starts]
    calls = guarded(
        lambda: [(build(piece.size), piece) for piece in pieces], what=what, fix=_SAMPLE_FIX
    )
    if len(calls) == 1:
        measurement, piece = calls[0]
        return [guarded(lambda: measurement(piece), what=what, fix=_SAMPLE_FIX)]
    return guarded(
        lambda: list(_pool().map(lambda call: call[0](call[1]), calls)),
        what=what,
        fix=_SAMPLE_FIX,
    )


def sample_float(
    kind: Kind, values: npt.NDArray[np.float64], *, scale: float, k: int
) -> npt.NDArray[np.float64]:
    """``values`` plus continuous ``kind`` noise of ``scale`` (Laplace b, Gaussian sigma).

    ``values`` must be finite; inside OpenDP they are rounded to the ``2**k``
    grid before exact discrete noise in units of ``2**k`` is added. The rounding
    can move a vector of ``n`` values by up to ``n * 2**k`` in L1 norm
    (``sqrt(n) * 2**k`` in L2): callers widen the scale to cover it.
    """
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if flat.size == 0:
        return flat.reshape(np.shape(values))
    parts = _run_chunks(
        flat, lambda length: _float_measurement(kind, scale, k, length), kind=kind, scale=scale
    )
    return np.concatenate([np.asarray(part, dtype=np.float64) for part in parts]).reshape(
        np.shape(values)
    )


def sample_int(kind: Kind, values: npt.NDArray[np.int64], *, scale: float) -> npt.NDArray[np.int64]:
    """``values`` plus discrete ``kind`` noise of ``scale``, exactly, in integers."""
    flat = np.ascontiguousarray(values, dtype=np.int64).ravel()
    if flat.size == 0:
        return flat.reshape(np.shape(values))
    parts = _run_chunks(
        flat, lambda length: _int_measurement(kind, scale, length), kind=kind, scale=scale
    )
    return np.concatenate([np.asarray(part, dtype=np.int64) for part in parts]).reshape(
        np.shape(values)
    )
