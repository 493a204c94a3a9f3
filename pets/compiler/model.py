"""``PrivateModel``: a compiled torch model that runs on private tensors.

>>> import numpy as np, torch, pets
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), pets.nn.Square(), torch.nn.Linear(4, 2))
>>> model = pets.compile(net, backend=pets.backend("ckks"), example_input=torch.randn(8, 3))
>>> model.depth, model.input_size, model.output_shape
(3, 3, (2,))
>>> out = model(model.encrypt(np.ones((5, 3))))
>>> model.decrypt(out).shape
(5, 2)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pets.backends.base import Backend, Requirements
from pets.backends.levelled import (
    DEFAULT_PLANNING,
    LevelledBackend,
    LevelledRequirements,
    levelled_backend,
)
from pets.compiler.approximate import Approximation
from pets.compiler.build import Program
from pets.compiler.graph import trace
from pets.compiler.layers import Affine, Layer, Polynomial
from pets.compiler.lowerings import LEVELLED, CompileOptions, Source, register_model_lowering
from pets.compiler.placement import (
    assign_placements,
    describe_gather,
    describe_products,
    first_product_layer,
)
from pets.compiler.precision import noise_gain, plan_ranges, target_precision
from pets.compiler.refine import build_within
from pets.compiler.validate import validate
from pets.errors import CompileError, ParameterError, ShapeMismatchError
from pets.tensor import PrivateTensor

__all__ = ["CompileReport", "PrivateModel"]


@dataclass(frozen=True)
class CompileReport:
    """What compile produced: layers, depth, approximations and their errors, value ranges."""

    layers: tuple[str, ...]
    depth: int
    approximations: tuple[Approximation, ...]
    #: worst-case ``|compiled - torch|`` of any output, for inputs whose values stay in the
    #: approximation ranges (ignores the backend's own noise)
    output_error_bound: float
    #: largest ``|compiled - torch|`` on the example input (plain arithmetic)
    calibration_error: float
    #: largest ``|value|`` each layer produces on the example input
    value_ranges: Mapping[str, float]
    requirements: Requirements
    #: why the backend chose its parameters (a levelled backend's ``describe()["why"]``)
    parameters: tuple[str, ...] = ()
    #: layers whose value bound is vouched by calibration rather than sound
    vouched: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"PrivateModel: {len(self.layers)} layers, depth {self.depth}"]
        lines += [f"  {i}. {text}" for i, text in enumerate(self.layers, 1)]
        lines += [f"  approximation {a}" for a in self.approximations]
        lines.append(
            f"  output error: <= {self.output_error_bound:.3g} (bound, inputs in range), "
            f"{self.calibration_error:.3g} on the example input"
        )
        lines.append(
            f"  largest |value|: {max(self.value_ranges.values(), default=0.0):.3g} on the "
            f"example input; parameters hold {self.requirements.max_abs:.3g} (a bound for "
            "inputs in the calibrated range)"
        )
        if self.vouched:
            lines.append(
                f"  calibrated, not sound: the bounds after {', '.join(self.vouched)} are the "
                "example's ranges with headroom (sound ones are too large to hold); inputs "
                "outside the calibrated range are refused by model.encrypt"
            )
        lines += [f"  parameters: {why}" for why in self.parameters]
        return "\n".join(lines)


class PrivateModel:
    """A torch model compiled for one backend: ``model(private_tensor) -> private_tensor``.

    Works on flattened samples: :meth:`encrypt` flattens ``(B, *input_shape)`` to
    ``(B, input_size)``; the output is ``(B, output_size)``.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        program: Program,
        example: np.ndarray,
        expected: np.ndarray,
        max_rows: int | None = None,
        precision: float | str | None = None,
        input_margin: float = 0.1,
    ) -> None:
        """Built by :func:`pets.compiler.compile`; ``example`` is the flattened example
        input and ``expected`` torch's flattened output on it. ``precision`` is the largest
        output error to accept (or ``"predictions"``); ``input_margin`` widens the
        example's range into the range inputs are checked against."""
        self.backend = backend
        self.layers: list[Layer] = list(program.layers)
        self.input_shape = program.input_shape
        self.output_shape = program.output_shape
        self._input_name = program.input_name
        self._output_name = program.output_name
        output, ranges = self._simulate(example)
        #: largest ``|value|`` each layer produces on the example input
        self.value_ranges: dict[str, float] = ranges
        #: largest ``|compiled - torch|`` on the example input (plain arithmetic)
        self.calibration_error = float(np.max(np.abs(output - expected), initial=0.0))
        #: largest ``|x|`` an input may hold: the example's, widened (``encrypt`` checks it)
        self.input_bound = float(np.max(np.abs(example), initial=0.0)) * (1.0 + input_margin)
        #: value bounds every layer's output carries (see :mod:`pets.compiler.precision`)
        self.ranges = plan_ranges(self.layers, self._input_name, self.input_bound,
                                  self._layer_maxima(example))
        #: output error per unit of noise, from each source and in total
        self.noise_gain = noise_gain(self.layers, self._input_name, self._output_name, example)
        #: the largest output error the backend's parameters are sized for
        self.precision = target_precision(precision, expected)
        levelled = levelled_backend(backend)
        planning = DEFAULT_PLANNING if levelled is None else levelled.planning()
        #: where a per-sample packing puts each value (see :mod:`pets.compiler.placement`)
        self.placements = assign_placements(self.layers, self._input_name, self.input_shape,
                                            planning)
        sources = {k: v for k, v in self.noise_gain.items() if k != "total"}
        costliest = max(sources, key=sources.__getitem__, default=None)
        share = 0.0 if costliest is None else sources[costliest] / max(sum(sources.values()),
                                                                       1e-300)
        self.__dict__.pop("_clear_run", None)  # the example run is not kept
        extension = LevelledRequirements(
            depth=self.depth,
            matmul_shapes=matmul_shapes(self.layers),
            first_product=self._first_product(),
            noise_gain=self.noise_gain["total"],
            precision=self.precision,
            input_bound=self.input_bound,
            noisiest_layer=None if costliest is None else (
                f"{self._source_of(costliest)} ({share:.0%} of the noise gain)"),
            products=tuple(describe_products(self.layers, self.placements)),
            gather=describe_gather(first_product_layer(self.layers, self._input_name)),
        )
        #: what the backend was prepared for
        self.requirements = Requirements(
            max_rows=max_rows or len(example),
            max_abs=max(self.ranges.largest, max(ranges.values(), default=0.0)),
            extension=extension,
        )

    # ---- shapes and costs -----------------------------------------------------

    @property
    def input_size(self) -> int:
        """Features per flattened input sample."""
        return int(np.prod(self.input_shape, dtype=np.int64))

    @property
    def output_size(self) -> int:
        """Features per flattened output sample."""
        return int(np.prod(self.output_shape, dtype=np.int64))

    def levels(self) -> dict[str, int]:
        """Multiplicative level of every value (input 0); the output's is :attr:`depth`."""
        levels = {self._input_name: 0}
        for layer in self.layers:
            levels[layer.name] = max(levels[i] for i in layer.inputs) + layer.depth
        return levels

    @property
    def depth(self) -> int:
        """Multiplicative depth of the whole computation."""
        return self.levels()[self._output_name]

    @property
    def approximations(self) -> list[Approximation]:
        """Every activation replaced by a polynomial, with its range and error."""
        return [
            layer.approximation for layer in self.layers
            if isinstance(layer, Polynomial) and layer.approximation is not None
        ]

    def error_bound(self) -> float:
        """Worst-case output error from the approximations, for inputs inside their ranges."""
        errors = {self._input_name: 0.0}
        for layer in self.layers:
            errors[layer.name] = layer.error_bound([errors[i] for i in layer.inputs])
        return errors[self._output_name]

    def for_backend(self, backend: Backend) -> PrivateModel:
        """The same model bound to another copy of the keys, e.g. ``backend.public()``
        on a server that must not hold the secret key.

        >>> import torch, pets
        >>> be = pets.backend("plain")
        >>> model = pets.compile(torch.nn.Linear(2, 1), backend=be, example_input=torch.ones(1, 2))
        >>> model.for_backend(be.public()).backend.has_secret_key
        False
        """
        self.backend.check_same_keys(backend)
        bound = copy.copy(self)
        bound.backend = backend
        return bound

    # ---- running ----------------------------------------------------------------

    def __call__(self, tensor: PrivateTensor, *, workers: int | None = None) -> PrivateTensor:
        """Run on a private ``(B, input_size)`` tensor (or one ``(input_size,)`` sample).

        ``workers=k`` (default :attr:`workers`, 1) evaluates independent samples in ``k``
        processes where the backend can split them (:mod:`pets.compiler.parallel`).
        """
        if not isinstance(tensor, PrivateTensor):
            raise TypeError(
                f"a PrivateModel runs on pets.PrivateTensor, got {type(tensor).__name__}; "
                "encrypt the input first with model.encrypt(x)"
            )
        if tensor.ndim not in (1, 2) or tensor.shape[-1] != self.input_size:
            raise ShapeMismatchError(
                f"this model takes {self.input_size} features per sample (input shape "
                f"{self.input_shape} flattened), got a private tensor of shape {tensor.shape}; "
                "encrypt with model.encrypt(x), which flattens each sample"
            )
        self._advise(tensor)
        count = self.workers if workers is None else workers
        levelled = levelled_backend(tensor.backend)
        if count > 1 and tensor.ndim == 2 and levelled is not None:
            return self._pool(count).run(tensor, self.output_size)
        values = {self._input_name: tensor}
        progress = _Progress(self, tensor)
        for index, layer in enumerate(self.layers, 1):
            out = layer.forward([values[i] for i in layer.inputs])
            progress.done(index, layer)
            if levelled is not None and layer.name in self.ranges.vouched:
                out = PrivateTensor(out.backend, levelled.assume_bound(
                    out.data, self.ranges.bounds[layer.name]), out.shape)
            values[layer.name] = out
        return values[self._output_name]

    #: worker processes a call uses by default (see :meth:`__call__`)
    workers: int = 1

    def estimate(self, rows: int | None = None, layout: str | None = None) -> Any:
        """Predicted seconds and memory of running on ``rows`` samples (by default the most
        encrypted at once, ``requirements.max_rows``), for one packing (``layout``) or, by
        default, for each the backend offers (levelled backends only; see
        :mod:`pets.compiler.estimate`)."""
        from pets.compiler.estimate import estimate

        rows = self.requirements.max_rows if rows is None else rows
        levelled = self._levelled()
        if levelled is None:
            raise CompileError(
                f"the {self.backend.name} backend reports no operation costs to estimate from"
            )
        costs = levelled.operation_costs()
        layouts = [layout] if layout else list(self.backend.layouts)
        cache = self.__dict__.setdefault("_estimates", {})
        found = {}
        for name in layouts:
            if (rows, name) not in cache:
                cache[(rows, name)] = estimate(self, rows, name, costs)
            found[name] = cache[(rows, name)]
        return found[layout] if layout else found

    def _choose_layout(self, rows: int) -> str | None:
        """The packing that fits in memory and finishes first, or ``None`` (backend's rule)."""
        from pets.compiler.estimate import available_memory

        if rows <= 16 or self._levelled() is None:
            return None
        estimates = self.estimate(rows)
        room = 0.8 * available_memory()
        fitting = [e for e in estimates.values() if e.memory_bytes <= room]
        if not fitting:
            raise ParameterError(
                f"no packing of {rows} samples fits in the {room / 2**30:.1f} GiB this machine "
                f"can give: {'; '.join(str(e) for e in estimates.values())}; encrypt and run "
                "fewer samples at a time"
            )
        return min(fitting, key=lambda e: e.seconds).layout

    def _advise(self, tensor: PrivateTensor) -> None:
        """Warn once when an input is packed in a way that is slow for this model."""
        if self.__dict__.get("_advised"):
            return
        levelled = levelled_backend(tensor.backend)
        advice = None if levelled is None else levelled.packing_advice(tensor.data,
                                                                       self.requirements)
        if advice is not None:
            from pets.compiler.estimate import PackingWarning

            self.__dict__["_advised"] = True
            warnings.warn(advice, PackingWarning, stacklevel=3)

    def _pool(self, workers: int) -> Any:
        from pets.compiler.parallel import ModelWorkers

        pool = self.__dict__.get("_workers_pool")
        if (pool is None or pool.broken or pool.workers != workers
                or pool.key_id != self.backend.key_id):
            if pool is not None:
                pool.close()
            pool = ModelWorkers(self, workers)
            self.__dict__["_workers_pool"] = pool
        return pool

    def close(self) -> None:
        """Stop the worker processes a call with ``workers > 1`` started (if any)."""
        pool = self.__dict__.pop("_workers_pool", None)
        if pool is not None:
            pool.close()

    def flatten(self, data: Any) -> np.ndarray:
        """``(B, *input_shape)``, ``(B, input_size)`` or one sample -> ``(B, input_size)``."""
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        array = np.asarray(data, dtype=np.float64)
        if array.shape[1:] == self.input_shape or (
            array.ndim == 2 and array.shape[1] == self.input_size
        ):
            return array.reshape(len(array), self.input_size)
        if array.shape == self.input_shape:
            return array.reshape(1, self.input_size)
        raise ShapeMismatchError(
            f"this model takes samples of shape {self.input_shape} ({self.input_size} features), "
            f"got an array of shape {array.shape}; pass (batch, *{self.input_shape})"
        )

    def encrypt(self, data: Any, *, layout: str | None = None,
                src: int | None = None, check_range: str = "raise") -> PrivateTensor:
        """Flatten each sample of ``data`` and encrypt it with the model's backend.

        ``layout=None`` lets the backend choose by batch size
        (``backend.choose_layout(rows)``: CKKS picks ``"per_sample"`` or ``"batched"``).
        ``src`` names the party whose data it is (see ``Backend.encrypt``). Inputs beyond
        the range the model was calibrated for (:attr:`input_bound`) raise
        :class:`~pets.errors.ValueRangeError` (``check_range="warn"``: a warning;
        ``"off"``: no check), since its approximations and parameters hold only there.
        """
        if check_range not in ("raise", "warn", "off"):
            raise ValueError(f"check_range must be 'raise', 'warn' or 'off', got {check_range!r}")
        flat = self.flatten(data)
        if layout is None and src is None:
            layout = self._choose_layout(len(flat))
        requirements = self.requirements
        if check_range != "raise":
            requirements = dataclasses.replace(requirements, extension=dataclasses.replace(
                self.levelled_requirements, check_range=check_range))
        return self.backend.encrypt_for(flat, requirements, layout=layout, src=src)

    @property
    def levelled_requirements(self) -> LevelledRequirements:
        """The levelled part of :attr:`requirements` (depth, products, precision)."""
        extension = self.requirements.extension
        assert isinstance(extension, LevelledRequirements)
        return extension

    def _levelled(self) -> LevelledBackend | None:
        return levelled_backend(self.backend)

    def _first_product(self) -> tuple[int, int] | None:
        """``(n, m)`` when the input feeds one product only, so the backend may pack for it."""
        readers = [layer for layer in self.layers if self._input_name in layer.inputs]
        if len(readers) == 1 and isinstance(readers[0], Affine) and len(readers[0].inputs) == 1:
            return readers[0].matmul_shapes[0]
        return None

    def decrypt(self, tensor: PrivateTensor, *, to: int | None = None) -> Any:
        """Decrypt an output to ``(B, *output_shape)`` (needs the secret key)."""
        flat = self.backend.decrypt(tensor, to=to)
        return flat.reshape(-1, *self.output_shape) if flat.ndim == 2 else flat

    def predict(self, data: Any, *, layout: str | None = None) -> np.ndarray:
        """Encrypt ``data``, run the model, decrypt: plain in, plain out (needs the secret key)."""
        return self.decrypt(self(self.encrypt(data, layout=layout)))

    def save(self, path: Any) -> None:
        """Write the compiled model to ``path`` (no pickle, no key); load it with
        ``pets.load_model(path, backend=...)`` (see :mod:`pets.compiler.saving`)."""
        from pets.compiler.saving import save_model

        save_model(self, path)

    def fit(self, x: PrivateTensor, y: PrivateTensor, **options: Any) -> Any:
        """Joint training, where the backend can (``"mpc"``, ``"plain"``; see ExactModel.fit)."""
        raise CompileError(
            f"this model was compiled with polynomials for the {self.backend.name} backend, "
            "which cannot train (HE has no comparisons to take gradients through); compile it "
            "for pets.backend('mpc') (or 'plain') to train it"
        )

    def to_torch(self, *, to: int | None = None) -> Any:
        """The weights as a torch module (models compiled for a backend that trains)."""
        raise CompileError(
            "this model's linear layers were fused for HE and cannot be mapped back to torch "
            "modules; keep the torch model you compiled, or compile for 'mpc'/'plain'"
        )

    def simulate(self, data: Any) -> np.ndarray:
        """The compiled arithmetic (polynomials included) on plain float64, no backend."""
        output, _ = self._simulate(self.flatten(data))
        return output.reshape(-1, *self.output_shape)

    def _source_of(self, name: str) -> str:
        """Where in the torch model a value comes from (``input`` for the input)."""
        for layer in self.layers:
            if layer.name == name:
                return layer.source or layer.name
        return "the input"

    def _layer_maxima(self, flat: np.ndarray) -> dict[str, float]:
        """Largest ``|output|`` of each layer (by name) on ``flat``."""
        return self._run_clear(flat)[2]

    def _simulate(self, flat: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        output, ranges, _ = self._run_clear(flat)
        return output, ranges

    def _run_clear(self, flat: np.ndarray) -> tuple[np.ndarray, dict[str, float],
                                                    dict[str, float]]:
        """Output, largest value met per layer (by source), largest output per layer (by
        name), in one pass (the example can be large)."""
        cached = self.__dict__.get("_clear_run")
        if cached is not None and cached[0] is flat:
            return cached[1]  # type: ignore[no-any-return]
        values = {self._input_name: flat}
        ranges = {"input": float(np.max(np.abs(flat), initial=0.0))}
        maxima = {}
        for layer in self.layers:
            values[layer.name], ranges[layer.source or layer.name] = layer.simulate(
                [values[i] for i in layer.inputs]
            )
            maxima[layer.name] = float(np.max(np.abs(values[layer.name]), initial=0.0))
        result = (values[self._output_name], ranges, maxima)
        self.__dict__["_clear_run"] = (flat, result)
        return result

    # ---- reporting ----------------------------------------------------------------

    def report(self) -> CompileReport:
        """Layers, depth, approximation errors and value ranges, as data (``str()`` for text)."""
        levels = self.levels()
        return CompileReport(
            layers=tuple(
                f"{layer.describe()} <- {layer.source} (level {levels[layer.name]})"
                for layer in self.layers
            ),
            depth=self.depth,
            approximations=tuple(self.approximations),
            output_error_bound=self.error_bound(),
            calibration_error=self.calibration_error,
            value_ranges=self.value_ranges,
            requirements=self.requirements,
            parameters=tuple(str(why) for why in self.backend.describe().get("why", ())),
            vouched=tuple(layer.source or layer.name for layer in self.layers
                          if layer.name in self.ranges.vouched),
        )

    def __str__(self) -> str:
        return str(self.report())

    def __repr__(self) -> str:
        return (
            f"<PrivateModel {self.input_shape} -> {self.output_shape}, {len(self.layers)} layers, "
            f"depth {self.depth}, backend {self.backend.name!r}>"
        )


def matmul_shapes(layers: Sequence[Layer]) -> tuple[tuple[int, int], ...]:
    """Every ``(in, out)`` plain-matrix product the layers compute."""
    return tuple(shape for layer in layers for shape in layer.matmul_shapes)


class _Progress:
    """Logs each layer of a long encrypted run (estimated over 20 s) with the time so far."""

    def __init__(self, model: PrivateModel, tensor: PrivateTensor) -> None:
        self.start = time.perf_counter()
        self.total = len(model.layers)
        self.expected: float | None = None
        if levelled_backend(model.backend) is not None and tensor.ndim == 2:
            try:
                self.expected = model.estimate(tensor.shape[0], tensor.layout).seconds
            except (CompileError, KeyError, ValueError):
                self.expected = None
        self.active = self.expected is not None and self.expected > 20.0
        if self.active:
            logger.info("running %d layers on %s samples (%s packing): about %.0f s",
                        self.total, tensor.shape[0], tensor.layout, self.expected)

    def done(self, index: int, layer: Layer) -> None:
        if self.active:
            logger.info("layer %d/%d (%s) done after %.1f s", index, self.total,
                        layer.describe(), time.perf_counter() - self.start)


logger = logging.getLogger(__name__)


def lower_levelled(module: Source, tensor: torch.Tensor, backend: Backend,
                   options: CompileOptions) -> PrivateModel:
    """The levelled-SIMD lowering: fused affine maps and polynomials (see the module)."""
    if options.weights_from is not None:
        raise CompileError(
            "weights_from needs the exact lowering of a backend with private weights "
            "(pets.backend('mpc')); polynomial (HE) models keep their weights in the clear "
            "on the server"
        )
    traced = trace(module, tensor)
    lowerings = validate(traced)
    assert traced.output_node is not None
    expected = traced.values[traced.output_node].reshape(len(tensor), -1).numpy()
    flat = tensor.reshape(len(tensor), -1).numpy()
    program = build_within(traced, lowerings, options, options.precision, expected, flat)
    model = PrivateModel(
        backend=backend, program=program, example=flat, expected=expected,
        max_rows=options.max_rows, precision=options.precision, input_margin=options.margin,
    )
    backend.prepare(model.requirements)
    return model


register_model_lowering(LEVELLED, lower_levelled)
