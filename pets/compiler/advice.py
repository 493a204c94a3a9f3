"""What compile tells a user about a model that would run, but not as they expect.

Two checks, each called once from :func:`pets.compile`:

* :func:`check_index_lookups`, before anything is traced: an ``nn.Embedding``
  (or ``EmbeddingBag``) given integer indices looks rows up by index, which no
  private backend can do with a private index; the user gets the one-hot
  remedy, whatever the backend (the example input is converted to floats
  afterwards, which used to hide the embedding behind a tracing error);
* :func:`warn_if_inaccurate`, after compiling: when the compiled arithmetic
  (polynomial stand-ins included) misses the precision the model is sized for
  on the example input, an :class:`ApproximationWarning` names the error, how
  many of the example's predictions change, and the fixes that exist.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from pets.compiler.precision import ApproximationWarning, target_precision
from pets.errors import ModelIssue, UnsupportedModelError

__all__ = ["changed_predictions", "check_index_lookups", "warn_if_inaccurate"]

_LOOKUP_PROBLEM = (
    "looks rows up by integer index, which no private backend can do with a private "
    "index (and compile would turn the indices into floats)."
)


def _integral(example: Any) -> bool:
    dtype = getattr(example, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex)
    try:
        return np.asarray(example).dtype.kind in "biu"
    except (TypeError, ValueError):
        return False


def check_index_lookups(module: nn.Module | torch.export.ExportedProgram, example: Any) -> None:
    """Raise :class:`UnsupportedModelError` naming every embedding, with the one-hot remedy,
    when ``example`` holds integer indices (compile would turn them into floats, and the
    model would then fail to trace before its embeddings were looked at)."""
    if not isinstance(module, nn.Module) or not _integral(example):
        return  # float inputs reach the lowering rules, which name embeddings themselves
    issues = [
        ModelIssue(
            f"{name or 'the model'} ({type(layer).__name__})", _LOOKUP_PROBLEM,
            "one-hot encode the indices before encrypting or sharing them and replace the "
            f"embedding by nn.Linear({layer.num_embeddings}, {layer.embedding_dim}, "
            "bias=False) whose weight is the embedding's weight transposed (the same "
            "function on one-hot rows)",
        )
        for name, layer in module.named_modules()
        if isinstance(layer, (nn.Embedding, nn.EmbeddingBag))
    ]
    if issues:
        raise UnsupportedModelError(issues)


def changed_predictions(output: np.ndarray, expected: np.ndarray) -> int:
    """Rows whose prediction differs: the argmax of several outputs, the sign of one."""
    flat, reference = output.reshape(len(output), -1), expected.reshape(len(expected), -1)
    if flat.shape[1] > 1:
        return int(np.sum(flat.argmax(axis=1) != reference.argmax(axis=1)))
    return int(np.sum((flat[:, 0] > 0) != (reference[:, 0] > 0)))


def _torch_output(module: nn.Module | torch.export.ExportedProgram,
                  example: torch.Tensor) -> np.ndarray:
    exported = isinstance(module, torch.export.ExportedProgram)
    runnable: nn.Module = module.module() if isinstance(module, torch.export.ExportedProgram) \
        else module
    parameter = next(runnable.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    was_training = runnable.training
    if not exported:  # an exported program runs as it was exported
        runnable.eval()
    batch = _exported_batch(module) if isinstance(module, torch.export.ExportedProgram) else None
    try:
        with torch.no_grad():
            if batch is None or len(example) == batch:
                output = runnable(example.to(dtype))
            else:  # its guards check the batch size it was exported with: run in such chunks
                output = torch.cat([runnable(chunk.to(dtype))[:rows]
                                    for chunk, rows in _chunks(example, batch)])
    finally:
        if not exported:
            runnable.train(was_training)
    return np.asarray(output.detach().to(torch.float64).numpy()).reshape(len(example), -1)


def _exported_batch(program: torch.export.ExportedProgram) -> int | None:
    """The batch size ``program`` was exported with, if it kept its example inputs."""
    inputs = program.example_inputs
    if not inputs or not inputs[0] or not isinstance(inputs[0][0], torch.Tensor):
        return None
    return int(inputs[0][0].shape[0]) if inputs[0][0].dim() else None


def _chunks(example: torch.Tensor, batch: int) -> list[tuple[torch.Tensor, int]]:
    """``example`` in chunks of ``batch`` rows (the last padded by repeating its first
    row), each with how many of its rows are real."""
    chunks = []
    for start in range(0, len(example), batch):
        part = example[start:start + batch]
        rows = len(part)
        if rows < batch:
            part = torch.cat([part, part[:1].expand(batch - rows, *part.shape[1:])])
        chunks.append((part, rows))
    return chunks


def warn_if_inaccurate(model: Any, module: nn.Module | torch.export.ExportedProgram,
                       example: torch.Tensor,
                       precision: float | str | None) -> None:
    """Warn when ``model`` (compiled from ``module``) misses its precision on ``example``.

    Only for the default precision: an explicit ``precision=`` is refined for, and
    refinement warns itself when it cannot reach it. Models without approximations
    (the exact lowering, or polynomial models of squares and affine maps only) are
    exact up to the backend's own noise and are not checked.
    """
    if precision is not None or not model.approximations:
        return
    expected = _torch_output(module, example)
    output = np.asarray(model.simulate(example.numpy())).reshape(len(example), -1)
    error = float(np.max(np.abs(output - expected), initial=0.0))
    target = target_precision(None, expected)
    if error <= target:
        return
    changed = changed_predictions(output, expected)
    functions = sorted({approximation.function for approximation in model.approximations})
    warnings.warn(
        f"the compiled model differs from torch by up to {error:.3g} on the example input, "
        f"beyond the precision it is sized for ({target:.2g}): {changed} of {len(example)} "
        f"predictions on the example change. The polynomials standing in for "
        f"{', '.join(functions)} cause it. Fix: compile with precision=\"predictions\" "
        "(raises degrees until the example's predictions agree), or a higher degree "
        "(degree=... or degrees={...}), or replace the activations with pets.nn.Square and "
        "retrain (pets.nn.he_friendly(model, data, epochs=...) does both and reports the "
        "accuracy)",
        ApproximationWarning, stacklevel=3,
    )
