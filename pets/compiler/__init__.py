"""``pets.compile``: turn a torch model into one that runs on private tensors.

(The function lives in ``pets.compiler`` so that the name ``pets.compile`` is the
function, never this package.)

The model is traced once (``torch.fx`` or ``torch.export``), validated (every
unsupported part reported at once), and lowered to a few layers over
``PrivateTensor``: runs of linear layers fused into one exact affine map each,
squares, and polynomial stand-ins for ReLU/Sigmoid/Tanh/GELU.

>>> import numpy as np, torch, pets
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), pets.nn.Square(), torch.nn.Linear(8, 3))
>>> be = pets.backend("plain")
>>> model = pets.compile(net, backend=be, example_input=torch.randn(16, 4))
>>> x = torch.randn(2, 4)
>>> bool(np.allclose(model.predict(x), net(x).detach(), atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pets.backends.base import Backend
from pets.compiler.advice import check_index_lookups, warn_if_inaccurate
from pets.compiler.approximate import DEFAULT_DEGREES, Approximation
from pets.compiler.lowering import (
    Activation,
    Linear,
    Lowering,
    OpContext,
    Polynomial,
    Product,
    Square,
    Unsupported,
    register_lowering,
    supported_layers,
)
from pets.compiler.lowerings import EXACT, LEVELLED, CompileOptions, lowering_named
from pets.compiler.model import CompileReport, PrivateModel
from pets.compiler.precision import ApproximationWarning
from pets.compiler.saving import load_model
from pets.compiler.sources import as_module
from pets.errors import CompileError

__all__ = [
    "ApproximationWarning",
    "DEFAULT_DEGREES",
    "Activation",
    "Approximation",
    "CompileReport",
    "Linear",
    "Lowering",
    "OpContext",
    "Polynomial",
    "PrivateModel",
    "Product",
    "Square",
    "Unsupported",
    "compile",
    "load_model",
    "register_lowering",
    "supported_layers",
]

Interval = tuple[float, float]


def _example_tensor(example_input: Any) -> torch.Tensor:
    if example_input is None:
        raise CompileError(
            "compile needs example_input: a batch (batch, *input_shape) of typical inputs; "
            "it fixes the input shape and calibrates the activation ranges"
        )
    if isinstance(example_input, torch.Tensor):
        tensor = example_input.detach().to(torch.float64)
    else:
        tensor = torch.as_tensor(np.asarray(example_input, dtype=np.float64))
    if tensor.ndim < 2:
        raise CompileError(
            f"example_input needs a batch dimension, got shape {tuple(tensor.shape)}; "
            "for one sample pass x[None]"
        )
    if not torch.isfinite(tensor).all():
        raise CompileError("example_input holds NaN or infinite values")
    return tensor


def compile(
    module: torch.nn.Module | torch.export.ExportedProgram,
    *,
    backend: Backend | str,
    example_input: Any,
    ranges: Mapping[str, Interval] | None = None,
    activation_range: Interval | None = None,
    degree: int | None = None,
    degrees: Mapping[str, int] | None = None,
    margin: float = 0.1,
    max_rows: int | None = None,
    weights_from: int | None = None,
    approximate: bool | None = None,
    precision: float | str | None = None,
) -> PrivateModel:
    """Compile ``module`` to run on ``backend``'s private tensors.

    ``module`` is an ``nn.Module`` (traced with ``torch.fx``, in eval mode) or a
    ``torch.export.ExportedProgram``. ``example_input`` ``(batch, *input_shape)``
    fixes the shapes and calibrates activation ranges. Activations other than
    squares are replaced by polynomials of ``degree`` (or ``degrees[name]``;
    defaults in :data:`DEFAULT_DEGREES`) fitted over ``ranges[name]`` (a node,
    module or function name such as ``"relu"``), else ``activation_range``, else
    the example's range widened by ``margin``. ``max_rows`` is the most samples
    encrypted at once (default: the example's batch). Calls ``backend.prepare``.

    The backend names the lowering (``Backend.lowering``, :mod:`.lowerings`):
    ``"exact"`` (``"mpc"``, ``"plain"``) runs ReLU, max-pool, softmax and
    normalisations by the backend's own protocols, op by op on tensors of any rank
    (:mod:`pets.compiler.exact`); ``"levelled"`` (``"ckks"``) makes fused affine
    maps and polynomials. ``approximate=True`` asks for the levelled lowering
    (e.g. to check on ``"plain"`` what CKKS will compute), ``approximate=False`` for
    the exact one. ``weights_from=r`` secret-shares party ``r``'s weights
    (backends with ``private_weights``).

    ``module`` may also be what ``pets.dp.make_private`` returns, or a fitted
    scikit-learn linear model or MLP (:mod:`pets.compiler.sources`). ``precision``
    (the largest output error to accept, or ``"predictions"``: the example's
    predictions unchanged) sizes a levelled backend's scale and raises polynomial
    degrees until the model agrees with torch on the example (:mod:`.refine`).

    Raises :class:`~pets.errors.UnsupportedModelError` listing every unsupported part.

    >>> import torch, pets
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    >>> model = pets.compile(net, backend="plain", example_input=torch.randn(32, 2),
    ...                      approximate=True)
    >>> model.depth, model.approximations[0].function, model.approximations[0].degree
    (5, 'relu', 4)
    """
    if isinstance(backend, str):
        from pets.registry import backend as make_backend

        backend = make_backend(backend)
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a pets.Backend or a name, got {type(backend).__name__}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    module = as_module(module)
    check_index_lookups(module, example_input)
    tensor = _example_tensor(example_input)
    lowering = backend.lowering if approximate is None else (
        LEVELLED if approximate else EXACT)
    if approximate is False and not backend.capabilities.comparisons:
        raise CompileError(
            f"approximate=False needs exact comparisons, which the {backend.name} backend "
            "lacks; leave approximate unset (polynomials) or use pets.backend('mpc')"
        )
    options = CompileOptions(
        ranges=dict(ranges or {}), activation_range=activation_range, degree=degree,
        degrees=dict(degrees or {}), margin=margin, max_rows=max_rows,
        weights_from=weights_from, precision=precision,
    )
    model = lowering_named(lowering)(module, tensor, backend, options)
    warn_if_inaccurate(model, module, tensor, precision)
    return model
