"""Compiled models to and from a file: what ``compile`` produced, without pickle.

``model.save(path)`` writes a pets envelope (:mod:`pets.serialization`: magic,
version, JSON header, blobs, SHA-256) of kind ``"model"``: the layers (kind,
inputs, source, polynomial coefficients and approximations), the weights and
biases as raw little-endian float64 blobs, the slot placements, the value
bounds and the requirements. No key: the same file serves any backend of the
same kind. ``pets.load_model(path, backend=be)`` checks every field before it
builds anything, and a damaged or foreign file raises
:class:`~pets.errors.SerializationError`.

>>> import os, tempfile, numpy as np, torch, pets
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), pets.nn.Square(), torch.nn.Linear(4, 2))
>>> model = pets.compile(net, backend="plain", example_input=torch.randn(8, 3), approximate=True)
>>> path = os.path.join(tempfile.mkdtemp(), "model.pets")
>>> model.save(path)
>>> loaded = pets.load_model(path, backend=pets.backend("plain"))
>>> x = np.ones((2, 3))
>>> bool(np.allclose(loaded.predict(x), model.predict(x)))
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pets.backends.base import Backend, Requirements
from pets.backends.levelled import levelled_requirements
from pets.compiler.approximate import Approximation
from pets.compiler.layers import Affine, ConvolutionInfo, Layer, Polynomial, Product, Square
from pets.compiler.precision import RangePlan
from pets.errors import CompileError, SerializationError
from pets.serialization import Envelope, pack, unpack
from pets.slots import SparseMatrix

if TYPE_CHECKING:
    from pets.compiler.model import PrivateModel

__all__ = ["load_model", "model_to_bytes", "save_model"]

#: 2: the requirements carry their levelled extension (depth, products, precision)
FORMAT = 2
#: the most layers and values a model file may announce (forged headers are refused early)
MAX_LAYERS, MAX_VALUES = 4096, 1 << 28

_KINDS: dict[str, type[Layer]] = {
    "Affine": Affine, "Square": Square, "Product": Product, "Polynomial": Polynomial,
}


class _Blobs:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def add(self, array: np.ndarray, dtype: str = "<f8") -> dict[str, Any]:
        data = np.ascontiguousarray(array, dtype=dtype)
        self.blobs.append(data.tobytes())
        return {"blob": len(self.blobs) - 1, "shape": list(data.shape), "dtype": dtype}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _layer_meta(layer: Layer, blobs: _Blobs) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": type(layer).__name__, "name": layer.name, "inputs": list(layer.inputs),
        "source": layer.source, "input_max_abs": [float(v) for v in layer.input_max_abs],
    }
    if isinstance(layer, Affine):
        weights = []
        for weight in layer.weights:
            if isinstance(weight, SparseMatrix):
                weights.append({"sparse": list(weight.shape),
                                "rows": blobs.add(weight.rows, "<i8"),
                                "cols": blobs.add(weight.cols, "<i8"),
                                "values": blobs.add(weight.values)})
            else:
                weights.append({"dense": blobs.add(weight)})
        meta["weights"] = weights
        meta["bias"] = blobs.add(layer.bias)
        conv = layer.convolution
        meta["convolution"] = None if conv is None else {
            "in_shape": list(conv.in_shape), "out_shape": list(conv.out_shape),
            "stride": list(conv.stride)}
        meta["placement"] = None if layer.placement is None else blobs.add(layer.placement, "<i8")
    if isinstance(layer, Polynomial):
        meta["coefficients"] = [float(c) for c in layer.coefficients]
        meta["interval"] = [float(v) for v in layer.interval]
        a = layer.approximation
        meta["approximation"] = None if a is None else {
            "where": a.where, "function": a.function, "degree": a.degree,
            "interval": list(a.interval), "interval_source": a.interval_source,
            "coefficients": list(a.coefficients), "max_error": a.max_error,
            "calibration_error": a.calibration_error, "outside_fraction": a.outside_fraction,
        }
    return meta


def save_model(model: PrivateModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (see the module docstring)."""
    data = model_to_bytes(model)
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


def model_to_bytes(model: PrivateModel) -> bytes:
    """What :func:`save_model` writes."""
    if not hasattr(model, "ranges") or not isinstance(getattr(model, "ranges", None), RangePlan):
        raise CompileError(
            f"{type(model).__name__} cannot be saved yet: pets saves models compiled with "
            "polynomials (for HE, or with approximate=True); keep the torch model and compile "
            "it again on the other side"
        )
    blobs = _Blobs()
    meta = {
        "format": FORMAT,
        "input_shape": list(model.input_shape), "output_shape": list(model.output_shape),
        "input_name": model._input_name, "output_name": model._output_name,
        "layers": [_layer_meta(layer, blobs) for layer in model.layers],
        "requirements": model.requirements.to_dict(),
        "input_bound": model.input_bound,
        "ranges": {"input_bound": model.ranges.input_bound, "bounds": dict(model.ranges.bounds),
                   "largest": model.ranges.largest, "vouched": list(model.ranges.vouched)},
        "noise_gain": dict(model.noise_gain),
        "precision": model.precision,
        "calibration_error": model.calibration_error,
        "value_ranges": {k: _finite(v) for k, v in model.value_ranges.items()},
        "placements": {name: None if p is None else blobs.add(p, "<i8")
                       for name, p in model.placements.items()},
    }
    return pack(Envelope("model", model.backend.name, "", meta, blobs.blobs))


# ---- loading: every field checked before use -----------------------------------------------


class _Reader:
    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    def array(self, spec: Any, what: str, *, dtype: str = "<f8") -> np.ndarray:
        if not isinstance(spec, Mapping) or spec.get("dtype") != dtype:
            raise SerializationError(f"model file: {what} is not a {dtype} array")
        index, shape = spec.get("blob"), spec.get("shape")
        if not isinstance(index, int) or not 0 <= index < len(self.blobs):
            raise SerializationError(f"model file: {what} names no blob")
        if not isinstance(shape, list) or len(shape) > 2 or not all(
            isinstance(n, int) and 0 <= n <= MAX_VALUES for n in shape
        ):
            raise SerializationError(f"model file: {what} has an invalid shape")
        count = int(np.prod(shape, dtype=np.int64))
        blob = self.blobs[index]
        if len(blob) != 8 * count:
            raise SerializationError(
                f"model file: {what} holds {len(blob)} bytes, not {8 * count}"
            )
        array = np.frombuffer(blob, dtype=dtype).reshape(shape)
        if dtype == "<f8" and not np.all(np.isfinite(array)):
            raise SerializationError(f"model file: {what} holds NaN or infinite values")
        return array.astype(np.float64 if dtype == "<f8" else np.int64)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SerializationError(f"model file: {what} must be a finite number, got {value!r}")
    return float(value)


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= 8 or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_VALUES for n in value
    ):
        raise SerializationError(f"model file: {what} is not a shape")
    return tuple(value)


def _layer(meta: Any, reader: _Reader, known: dict[str, int]) -> Layer:
    if not isinstance(meta, Mapping):
        raise SerializationError("model file: a layer is not an object")
    kind, name = meta.get("kind"), meta.get("name")
    if kind not in _KINDS or not isinstance(name, str) or name in known:
        raise SerializationError(f"model file: a layer of kind {kind!r} named {name!r}")
    inputs = meta.get("inputs")
    if not isinstance(inputs, list) or not inputs or any(i not in known for i in inputs):
        raise SerializationError(f"model file: layer {name} reads values no layer before wrote")
    common: dict[str, Any] = {
        "name": name, "inputs": tuple(inputs), "source": str(meta.get("source", "")),
        "input_max_abs": tuple(_number(v, "input_max_abs") for v in meta.get("input_max_abs", [])),
    }
    sizes = [known[i] for i in inputs]
    if kind == "Affine":
        weights: list[np.ndarray | SparseMatrix] = []
        specs = meta.get("weights")
        if not isinstance(specs, list) or len(specs) != len(inputs):
            raise SerializationError(f"model file: layer {name} has the wrong number of weights")
        for size, spec in zip(sizes, specs, strict=True):
            if isinstance(spec, Mapping) and "sparse" in spec:
                n, m = _shape(spec["sparse"], "a sparse shape")
                rows = reader.array(spec.get("rows"), "sparse rows", dtype="<i8")
                cols = reader.array(spec.get("cols"), "sparse columns", dtype="<i8")
                values = reader.array(spec.get("values"), "sparse values")
                if not (rows.shape == cols.shape == values.shape) or (len(rows) and (
                        rows.min() < 0 or rows.max() >= n or cols.min() < 0 or cols.max() >= m)):
                    raise SerializationError(f"model file: layer {name}'s sparse entries are "
                                             "out of range")
                weight: np.ndarray | SparseMatrix = SparseMatrix(rows, cols, values, (n, m))
            elif isinstance(spec, Mapping):
                weight = reader.array(spec.get("dense"), "a weight matrix")
            else:
                raise SerializationError(f"model file: layer {name} has a malformed weight")
            ndim = weight.ndim if isinstance(weight, np.ndarray) else 2
            if ndim != 2 or weight.shape[0] != size:
                raise SerializationError(f"model file: layer {name}'s weights do not fit its "
                                         "inputs")
            weights.append(weight)
        outputs = {w.shape[1] for w in weights}
        bias = reader.array(meta.get("bias"), "a bias")
        if len(outputs) != 1 or bias.ndim != 1 or len(bias) not in (0, *outputs):
            raise SerializationError(f"model file: layer {name}'s weights and bias disagree")
        conv = meta.get("convolution")
        convolution = None if conv is None else ConvolutionInfo(
            _shape(conv.get("in_shape"), "in_shape"),  # type: ignore[arg-type]
            _shape(conv.get("out_shape"), "out_shape"),  # type: ignore[arg-type]
            _shape(conv.get("stride"), "stride"),  # type: ignore[arg-type]
        ) if isinstance(conv, Mapping) else _bad(name, "convolution")
        placement = None
        if meta.get("placement") is not None:
            placement = _placement(reader, meta["placement"], outputs.pop() if outputs else 0)
        layer = Affine(**common, weights=tuple(weights), bias=bias.copy(),
                       convolution=convolution, placement=placement)
        known[name] = layer.weights[0].shape[1]
        return layer
    if kind in ("Square", "Polynomial") and len(inputs) != 1:
        raise SerializationError(f"model file: layer {name} must read one value")
    if kind == "Product" and (len(inputs) != 2 or sizes[0] != sizes[1]):
        raise SerializationError(f"model file: layer {name} must read two values of one size")
    known[name] = sizes[0]
    if kind != "Polynomial":
        return _KINDS[kind](**common)
    coefficients = meta.get("coefficients")
    if not isinstance(coefficients, list) or not 2 <= len(coefficients) <= 64:
        raise SerializationError(f"model file: layer {name} has no valid polynomial")
    interval = meta.get("interval", [-1.0, 1.0])
    approx = meta.get("approximation")
    approximation = None
    if approx is not None:
        try:
            approximation = Approximation(
                where=str(approx["where"]), function=str(approx["function"]),
                degree=int(approx["degree"]),
                interval=(_number(approx["interval"][0], "interval"),
                          _number(approx["interval"][1], "interval")),
                interval_source=str(approx["interval_source"]),
                coefficients=tuple(_number(c, "coefficient") for c in approx["coefficients"]),
                max_error=_number(approx["max_error"], "max_error"),
                calibration_error=_number(approx["calibration_error"], "calibration_error"),
                outside_fraction=_number(approx["outside_fraction"], "outside_fraction"),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise SerializationError(f"model file: layer {name}'s approximation is "
                                     f"malformed: {exc}") from exc
    return Polynomial(
        **common, coefficients=tuple(_number(c, "a coefficient") for c in coefficients),
        approximation=approximation,
        interval=(_number(interval[0], "interval"), _number(interval[1], "interval")),
    )


def _bad(name: str, field: str) -> Any:
    raise SerializationError(f"model file: layer {name}'s {field} is malformed")


def _placement(reader: _Reader, spec: Any, features: int) -> np.ndarray:
    placement = reader.array(spec, "a placement", dtype="<i8")
    if placement.shape != (features,) or (features and (
            placement.min() < 0 or placement.max() >= 1 << 20
            or len(np.unique(placement)) != features)):
        raise SerializationError("model file: a placement does not place its features")
    placement.flags.writeable = False
    return placement


def load_model(path: str | os.PathLike[str] | bytes, *, backend: Backend | str) -> PrivateModel:
    """A model saved with ``model.save(path)``, bound to ``backend`` (``prepare`` is called).

    ``path`` may also be the file's bytes.
    """
    from pets.compiler.model import PrivateModel

    if isinstance(backend, str):
        from pets.registry import backend as make_backend

        backend = make_backend(backend)
    if isinstance(path, bytes):
        data = path
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SerializationError(f"cannot read the model file {str(path)!r}: {exc}") from exc
    envelope = unpack(data, kind="model")
    if envelope.backend != backend.name:
        raise SerializationError(
            f"this model was compiled for the {envelope.backend} backend; load it with "
            f"pets.backend({envelope.backend!r}) (or compile the torch model again for "
            f"{backend.name})"
        )
    meta = envelope.meta
    if meta.get("format") != FORMAT:
        raise SerializationError(f"model file format {meta.get('format')!r} is not {FORMAT}")
    reader = _Reader(envelope.blobs)
    try:
        input_shape = _shape(meta["input_shape"], "input_shape")
        output_shape = _shape(meta["output_shape"], "output_shape")
        input_name, output_name = str(meta["input_name"]), str(meta["output_name"])
        specs = meta["layers"]
        if not isinstance(specs, list) or len(specs) > MAX_LAYERS:
            raise SerializationError("model file: the layers are not a short list")
        known = {input_name: int(np.prod(input_shape))}
        layers = [_layer(spec, reader, known) for spec in specs]
        if output_name not in known or known[output_name] != int(np.prod(output_shape)):
            raise SerializationError("model file: no layer writes the output it announces")
        requirements = Requirements.from_dict(meta["requirements"])
        ranges_meta = meta["ranges"]
        ranges = RangePlan(
            _number(ranges_meta["input_bound"], "input_bound"),
            {str(k): _number(v, "a bound") for k, v in dict(ranges_meta["bounds"]).items()},
            _number(ranges_meta["largest"], "largest"),
            tuple(str(v) for v in ranges_meta["vouched"]),
        )
        placements: dict[str, np.ndarray | None] = {}
        for name, spec in dict(meta["placements"]).items():
            if name not in known:
                raise SerializationError(f"model file: a placement for unknown value {name!r}")
            placements[name] = None if spec is None else _placement(reader, spec, known[name])
        model = PrivateModel.__new__(PrivateModel)
        model.backend = backend
        model.layers = layers
        model.input_shape, model.output_shape = input_shape, output_shape
        model._input_name, model._output_name = input_name, output_name
        model.value_ranges = {str(k): float("nan") if v is None else _number(v, "a range")
                              for k, v in dict(meta["value_ranges"]).items()}
        model.calibration_error = _number(meta["calibration_error"], "calibration_error")
        model.input_bound = _number(meta["input_bound"], "input_bound")
        model.ranges = ranges
        model.noise_gain = {str(k): _number(v, "a gain") for k, v in
                            dict(meta["noise_gain"]).items()}
        model.precision = _number(meta["precision"], "precision")
        model.placements = placements
        model.requirements = requirements
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, SerializationError):
            raise
        raise SerializationError(f"model file is malformed: {exc!r}") from exc
    if model.depth != levelled_requirements(requirements).depth:
        raise SerializationError("model file: its layers' depth contradicts its requirements")
    backend.prepare(requirements)
    return model
