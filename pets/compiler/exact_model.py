"""``PrivateModel`` on a backend that compares: exact layers, any rank, secret weights, training.

>>> import numpy as np, torch, pets
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
...                           torch.nn.Flatten(), torch.nn.Linear(8, 3), torch.nn.Softmax(1))
>>> x = torch.randn(4, 1, 6, 6)
>>> model = pets.compile(net, backend=pets.backend("plain"), example_input=x)
>>> bool(np.allclose(model.predict(x), net(x).detach(), atol=1e-6))
True
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pets.backends.base import Backend
from pets.compiler.exact import (
    ExactProgram,
    Interval,
    Ranges,
    check_input,
    check_weights_owner,
    share_parameters,
    widest,
)
from pets.compiler.lowerings import EXACT, CompileOptions, Source, register_model_lowering
from pets.compiler.model import PrivateModel
from pets.tensor import PrivateTensor

if TYPE_CHECKING:
    from pets.compiler.training import TrainingHistory

__all__ = ["ExactModel"]


class ExactModel(PrivateModel):
    """A torch model compiled for a backend with exact comparisons (``"mpc"``, ``"plain"``).

    The same interface as every :class:`PrivateModel`; inputs keep their shape
    ``(B, *input_shape)`` (no flattening), activations are exact, weights can be
    secret (``weights_from=r``) and the model can be trained (:meth:`fit`).
    """

    def __init__(  # built by pets.compile; PrivateModel's HE fields do not apply
        self,
        *,
        backend: Backend,
        program: ExactProgram,
        example: np.ndarray,
        weights_from: int | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.backend = backend
        self.program = program
        self.input_shape = program.input_shape
        self.output_shape = program.output_shape
        self.weights_from = check_weights_owner(backend, weights_from)
        owner = 0 if self.weights_from is None else self.weights_from
        calibrated = program.calibrate(example) if backend.rank == owner else None
        #: intervals (per node) that size exp, reciprocal and inverse square roots
        self.intervals: dict[str, Interval] = backend.share_public(calibrated, src=owner)
        self.parameters: dict[str, Any] = (
            dict(program.parameters) if self.weights_from is None
            else share_parameters(program, backend, self.weights_from)
        )
        self.requirements = program.requirements(max_rows or len(example))
        self.layers = []
        self.value_ranges = {"widest calibrated": widest(self.intervals)}
        self.calibration_error = 0.0
        backend.prepare(self.requirements)

    # ---- what it is -----------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Multiplicative depth does not limit this backend (0: not levelled)."""
        return 0

    @property
    def approximations(self) -> list[Any]:
        return []

    def error_bound(self) -> float:
        return 0.0

    def __str__(self) -> str:
        lines = [f"PrivateModel on {self.backend.name} (exact layers), input "
                 f"{self.input_shape} -> output {self.output_shape}"]
        lines += [f"  {i}. {text}" for i, text in enumerate(self.program.node_names(), 1)]
        owner = ("plain weights known to every party" if self.weights_from is None
                 else f"weights secret-shared from party {self.weights_from}")
        lines.append(f"  {owner}; {len(self.intervals)} calibrated ranges")
        return "\n".join(lines)

    def report(self) -> str:  # type: ignore[override]
        return str(self)

    # ---- running ---------------------------------------------------------------------------

    def __call__(self, tensor: PrivateTensor, *, workers: int | None = None) -> PrivateTensor:
        """Run on a private ``(B, *input_shape)`` tensor (``workers`` is an HE option: MPC
        and plain compute in this process, the parties being the parallelism)."""
        check_input(self.program, tensor)
        self.backend.check_same_keys(tensor.backend)
        return self.program.run(tensor, self.parameters, Ranges(self.intervals))

    def flatten(self, data: Any) -> np.ndarray:
        """``(B, *input_shape)``, ``(B, input_size)`` or one sample -> ``(B, *input_shape)``."""
        return super().flatten(data).reshape(-1, *self.input_shape)

    def encrypt(self, data: Any, *, layout: str | None = None,
                src: int | None = None, check_range: str = "raise") -> PrivateTensor:
        """Share (or encrypt) a batch of inputs; under MPC only party ``src`` passes data.
        (``check_range`` is for polynomial models; exact layers hold on any input.)"""
        array = None if data is None else self.flatten(data)
        return self.backend.encrypt_for(array, self.requirements, src=src, layout=layout)

    def decrypt(self, tensor: PrivateTensor, *, to: int | None = None) -> Any:
        """Reveal an output to ``(B, *output_shape)`` (to party ``to`` only, if given)."""
        values = self.backend.decrypt(tensor, to=to)
        return None if values is None else values.reshape(-1, *self.output_shape)

    def predict(self, data: Any, *, layout: str | None = None) -> np.ndarray:
        return self.decrypt(self(self.encrypt(data, layout=layout)))

    def simulate(self, data: Any) -> np.ndarray:
        """The same computation on plain float64 (exact functions), no backend."""
        from pets.registry import backend as make_backend

        plain = make_backend("plain")
        x = plain.encrypt(self.flatten(data))
        out = self.program.run(x, self.program.parameters, Ranges(self.intervals))
        return np.asarray(plain.decrypt(out))

    def for_backend(self, backend: Backend) -> ExactModel:
        self.backend.check_same_keys(backend)
        bound = copy.copy(self)
        bound.backend = backend
        return bound

    # ---- training --------------------------------------------------------------------------

    def fit(self, x: PrivateTensor, y: PrivateTensor, *, epochs: int = 1, lr: float = 0.1,
            batch_size: int = 32, loss: str = "cross_entropy", **options: Any) -> TrainingHistory:
        """Train on private data and labels (see :func:`pets.compiler.training.fit`)."""
        from pets.compiler.training import fit

        return fit(self, x, y, epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, **options)

    def to_torch(self, *, to: int | None = None) -> torch.nn.Module | None:
        """The (trained) weights revealed into a copy of the torch module.

        ``to=r`` reveals them to party ``r`` only (the others get ``None``).
        """
        from pets.compiler.training import to_torch

        return to_torch(self, to=to)


def lower_exact(module: Source, tensor: torch.Tensor, backend: Backend,
                options: CompileOptions) -> ExactModel:
    """The exact lowering: the exported graph run op by op (see :mod:`pets.compiler.exact`)."""
    program = ExactProgram(module, tensor, ranges=options.ranges, margin=options.margin)
    return ExactModel(backend=backend, program=program, example=tensor.numpy(),
                      weights_from=options.weights_from, max_rows=options.max_rows)


register_model_lowering(EXACT, lower_exact)
