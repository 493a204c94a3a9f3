"""Lazy imports of the DP engines, so that ``import pets.dp`` loads none of them.

OpenDP, Opacus, dp-accounting and torch are imported inside the functions that
need them. A missing engine gives :class:`pets.errors.BackendNotInstalledError`
naming the install command instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pets.errors import BackendNotInstalledError

__all__ = ["require", "require_opendp"]

_DISTRIBUTIONS = {
    "opendp": "opendp",
    "opacus": "opacus",
    "dp_accounting": "dp-accounting",
    "torch": "torch==2.13.0",
    "scipy": "scipy",
}


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``BackendNotInstalledError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(top, top)
        raise BackendNotInstalledError(
            f"{purpose} needs the '{dist}' package, which is not installed. "
            "Fix: pip install 'pets[dp]'"
        ) from exc


_opendp_ready = False


def require_opendp() -> Any:
    """Return ``opendp.prelude`` with the ``contrib`` features enabled.

    ``contrib`` is needed for OpenDP's measurements (their proofs are published
    but not yet formally reviewed). ``floating-point`` is *not* enabled: the
    samplers used here are the exact discrete ones that resist floating-point
    attacks, which is the point of using OpenDP.
    """
    global _opendp_ready
    prelude = require("opendp.prelude", purpose="secure noise sampling")
    if not _opendp_ready:
        prelude.enable_features("contrib")
        _opendp_ready = True
    return prelude
