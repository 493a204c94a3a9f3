"""The lowerings a backend can name: what ``pets.compile`` hands a checked model to.

``pets.compile`` does the work every backend shares (export or trace, check the
example input, pick the lowering) and calls the lowering the backend names in
its ``lowering`` class attribute:

=============  ================================================================
``"exact"``    op by op on tensors of any rank, each ATen operator by its handler
               (:mod:`pets.compiler.exact`); for backends that compare (MPC, plain)
``"levelled"`` fused affine maps and polynomials, placements, precision and noise
               plans (:mod:`pets.compiler.model`); for levelled-SIMD backends (HE),
               asked through :class:`pets.backends.levelled.LevelledBackend`
=============  ================================================================

A lowering is a function ``(module, example, backend, options) -> model``;
:func:`register_model_lowering` adds one (an outside package may ship its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from pets.backends.base import Backend
from pets.backends.levelled import LEVELLED
from pets.errors import CompileError

if TYPE_CHECKING:
    from pets.compiler.model import PrivateModel

__all__ = [
    "EXACT", "LEVELLED", "CompileOptions", "ModelLowering", "lowering_named", "lowering_names",
    "register_model_lowering",
]

#: the name of the op-by-op lowering
EXACT = "exact"

Interval = tuple[float, float]


@dataclass(frozen=True)
class CompileOptions:
    """``pets.compile``'s keywords, as every lowering receives them."""

    ranges: Mapping[str, Interval] = field(default_factory=dict)
    activation_range: Interval | None = None
    degree: int | None = None
    degrees: Mapping[str, int] = field(default_factory=dict)
    margin: float = 0.1
    max_rows: int | None = None
    weights_from: int | None = None
    precision: float | str | None = None


#: what a lowering is given: the model (a module or an exported program), the example input
#: (float64, batch first), the backend and the options
Source = torch.nn.Module | torch.export.ExportedProgram
ModelLowering = Callable[[Source, torch.Tensor, Backend, CompileOptions], "PrivateModel"]

_LOWERINGS: dict[str, ModelLowering] = {}


def register_model_lowering(name: str, lowering: ModelLowering) -> None:
    """Make ``lowering`` available to backends whose ``lowering`` attribute is ``name``."""
    _LOWERINGS[name] = lowering


def lowering_names() -> list[str]:
    """The lowerings a backend may name."""
    _load()
    return sorted(_LOWERINGS)


def lowering_named(name: str) -> ModelLowering:
    """The lowering registered as ``name``, or a :class:`CompileError` listing the others."""
    _load()
    if name not in _LOWERINGS:
        raise CompileError(
            f"no lowering is named {name!r} (a backend's 'lowering' attribute); known: "
            f"{', '.join(sorted(_LOWERINGS))}"
        )
    return _LOWERINGS[name]


def _load() -> None:
    """Import the lowerings the library ships (they register themselves)."""
    import pets.compiler.exact_model
    import pets.compiler.model  # noqa: F401

