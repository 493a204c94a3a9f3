"""Where the served model comes from, and how it is bound to one client's keys.

A model source is a small picklable description (a file path, calibration
inputs) that every worker process opens once; opening gives a function that
compiles the model for a session's public backend. Two sources: a file written
by ``torch.export.save`` (compiled for every session's keys), and a compiled
model saved with ``model.save(path)`` (``pets.load_model`` binds it to each
session's keys without compiling again).

A ``torch.export`` file is trusted input: ``torch.export.load`` unpickles parts
of it. A saved compiled model is a pets envelope, checked field by field, never
unpickled. Nothing a client sends is unpickled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import pets
from pets.errors import CompileError, SerializationError

__all__ = [
    "PT2_HINT", "CompiledModel", "ExportedModel", "ModelFactory", "ModelSource", "load_source",
]

log = logging.getLogger("pets_protocols.service")

#: a model bound to one backend (``pets.compile`` for it)
ModelFactory = Callable[[pets.Backend], Any]

PT2_HINT = (
    "export the model first: torch.export.save(torch.export.export(net.eval(), (x,)), "
    "'model.pt2') with x a batch of typical inputs, then pets serve model.pt2"
)


class ModelSource(Protocol):
    """What ``pets serve`` serves: opened once per process, bound once per session."""

    @property
    def name(self) -> str:
        """How logs call the model."""

    def open(self) -> ModelFactory:
        """Load the model; a function compiling it for a backend."""


@dataclass(frozen=True)
class ExportedModel:
    """A ``torch.export.save`` file; ``example`` calibrates activation ranges.

    Without ``example`` the inputs saved in the file fix the shapes; a model that
    approximates an activation over a range then needs ``example`` (``--example``).
    """

    path: Path
    example: np.ndarray | None = None
    name: str = ""

    def load_program(self) -> Any:
        import torch

        if not self.path.is_file():
            raise SerializationError(f"no model file {str(self.path)!r}; {PT2_HINT}")
        quiet = logging.getLogger("torch.export")  # it logs a traceback before falling back
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return torch.export.load(self.path)
        except Exception as exc:  # torch raises RuntimeError, BadZipFile, KeyError ...
            raise SerializationError(
                f"{str(self.path)!r} is not a torch.export file ({type(exc).__name__}); "
                f"a torch.save (.pt) file cannot be served: {PT2_HINT}"
            ) from exc
        finally:
            quiet.setLevel(level)

    def saved_rows(self) -> int:
        """How many example rows the file keeps (what calibrates it without ``example``)."""
        return len(_saved_inputs(self.load_program(), self.path))

    def open(self) -> ModelFactory:
        program = self.load_program()
        calibrated = self.example is not None
        example = self.example if calibrated else _saved_inputs(program, self.path)

        def compile_for(backend: pets.Backend) -> Any:
            model = pets.compile(program, backend=backend, example_input=example)
            if not calibrated and model.approximations:
                names = ", ".join(sorted({a.function for a in model.approximations}))
                raise CompileError(
                    f"the model approximates {names} by a polynomial over a range calibrated "
                    "on typical inputs; pass them: pets serve MODEL --example inputs.npy"
                )
            return model

        return compile_for


@dataclass(frozen=True)
class CompiledModel:
    """A compiled model saved with ``model.save(path)``: bound to each session's public keys
    by ``pets.load_model``, never compiled again (and never unpickled)."""

    path: Path
    name: str = ""

    def open(self) -> ModelFactory:
        data = self.path.read_bytes()

        def bind(backend: pets.Backend) -> Any:
            return pets.load_model(data, backend=backend)

        bind(pets.backend("ckks"))  # a damaged or foreign file fails here, at start-up
        return bind


#: the first bytes of a pets envelope (checksummed, or authenticated)
_PETS_MAGIC = (b"PETS", b"PETA")


def _saved_inputs(program: Any, path: Path) -> np.ndarray:
    inputs: Any = getattr(program, "example_inputs", None)
    try:
        tensor = inputs[0][0]
        return np.asarray(tensor.detach().double().numpy())
    except (IndexError, TypeError, AttributeError) as exc:
        raise CompileError(
            f"{str(path)!r} keeps no example input to fix the model's input shape; pass "
            "typical inputs: pets serve MODEL --example inputs.npy"
        ) from exc


#: a built-in model: ``quick -> (torch module, typical inputs)``
BuiltinModel = Callable[[bool], tuple[Any, np.ndarray]]


def load_source(spec: str, example: str | None = None, *, quick: bool = False,
                folder: str | Path = ".",
                builtins: Mapping[str, BuiltinModel] | None = None) -> ModelSource:
    """``pets serve``'s MODEL: the name of a built-in model (``builtins``: trained now,
    exported into ``folder``; ``pets serve`` offers ``"digits"``), a ``torch.export.save``
    file (``example``: a ``.npy`` of typical inputs), or a compiled model saved with
    ``model.save(path)`` (recognised by its pets header)."""
    if builtins and spec in builtins:
        import torch

        net, x = builtins[spec](quick)
        path = Path(folder) / f"{spec}.pt2"
        torch.export.save(torch.export.export(net, (torch.tensor(x[:8], dtype=torch.float32),)),
                          path)
        return ExportedModel(path, np.asarray(x), name=spec)
    path = Path(spec)
    if path.is_file():
        with path.open("rb") as file:
            if file.read(4) in _PETS_MAGIC:
                return CompiledModel(path, name=path.name)
    calibration = None
    if example is not None:
        try:
            calibration = np.load(example, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SerializationError(f"cannot read --example {example!r} ({exc}); pass a .npy "
                                     "file written by numpy.save") from exc
    return ExportedModel(Path(spec), calibration, name=Path(spec).name)
