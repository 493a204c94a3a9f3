"""Gradient inversion: rebuild a client's training inputs from the update it shared.

The *reconstruction* threat of docs/threats.md: in federated learning a client
sends the gradient of its loss, and that gradient can give its data away.

``analytic``  For a model whose first layer is fully connected with a bias,
              ``z = W x + b``, one example's gradient is ``dW = db x^T``: every
              row ``i`` with ``db_i != 0`` gives ``x = dW_i / db_i``. pets takes the
              least-squares combination of all rows, ``x = sum_i db_i dW_i / sum_i db_i^2``,
              exact on a clean gradient and averaging noise over rows on a noisy one
              (Phong et al. 2017; Geiping et al. 2020).
``dlg``       Deep Leakage from Gradients (Zhu et al. 2019): optimise a dummy
              input (and a soft label) with L-BFGS until the gradient it produces
              matches the shared one. Works for any twice-differentiable model;
              smooth activations (sigmoid, tanh) make it much easier than ReLU.
              Gradients are matched by cosine distance by default (Geiping et
              al. 2020), which ignores the update's scale and so survives
              clipping; ``distance="l2"`` is the original squared error.

The label comes first, as in iDLG (Zhao et al. 2020): under cross-entropy the
last layer's bias gradient is ``softmax(z) - onehot(y)``, negative only at the
true label. The update is assumed to be the gradient of the *mean* cross-entropy
over the batch (what ``loss.backward()`` gives).

The defence is clipping and Gaussian noise on the update (DP-SGD, or a client's
DP mod in federated learning); :func:`clip_and_noise` applies it so the attack's
error can be measured against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pets.attacks._common import check_count, require_torch
from pets.errors import (
    DPConfigurationError,
    ModelIssue,
    NonFiniteValueError,
    ShapeMismatchError,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    import torch

__all__ = ["GradientInversionReport", "clip_and_noise", "gradient_inversion"]

Gradients = Sequence[Any] | Mapping[str, Any]
METHODS = ("auto", "analytic", "dlg")
DISTANCES = ("l2", "cosine")


@dataclass(frozen=True, eq=False)
class GradientInversionReport:
    """What a gradient-inversion attack rebuilt, and how close it came.

    Unpacks as ``inputs, labels = report``. ``mse`` and ``psnr`` (in dB, against
    the truth's value range) are set when the true inputs were given; the
    reconstructions are matched to the true examples first (order is not
    recoverable from a batch gradient).
    """

    inputs: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    method: str
    gradient_distance: float
    mse: float | None = None
    psnr: float | None = None
    label_accuracy: float | None = None

    def __iter__(self) -> Iterator[Any]:
        yield self.inputs
        yield self.labels

    def __str__(self) -> str:
        line = (
            f"gradient inversion ({self.method}): {len(self.inputs)} input(s) rebuilt, "
            f"labels {self.labels.tolist()}, gradient distance {self.gradient_distance:.3g}"
        )
        if self.mse is not None and self.psnr is not None:
            line += f"; MSE {self.mse:.3g}, PSNR {self.psnr:.1f} dB against the truth"
        if self.label_accuracy is not None:
            line += f", labels {self.label_accuracy:.0%} right"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the inputs as nested lists)."""
        return {
            "attack": "gradient_inversion",
            "method": self.method,
            "inputs": self.inputs.tolist(),
            "labels": self.labels.tolist(),
            "gradient_distance": self.gradient_distance,
            "mse": self.mse,
            "psnr": _json_float(self.psnr),
            "label_accuracy": self.label_accuracy,
        }


def _json_float(value: float | None) -> float | str | None:
    return "inf" if value is not None and math.isinf(value) else value


def _as_tensors(model: torch.nn.Module, gradients: Gradients) -> list[torch.Tensor]:
    """The shared update as one tensor per trainable parameter, shapes checked."""
    torch = require_torch("gradient inversion")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if isinstance(gradients, Mapping):
        missing = [n for n, _ in named if n not in gradients]
        if missing:
            raise ShapeMismatchError(
                f"the gradients lack parameter(s) {', '.join(missing)}. Fix: pass one gradient "
                "per trainable parameter, keyed by model.named_parameters() names."
            )
        values = [gradients[n] for n, _ in named]
    else:
        values = list(gradients)
        if len(values) != len(named):
            raise ShapeMismatchError(
                f"got {len(values)} gradient(s) for {len(named)} trainable parameter(s). "
                "Fix: pass one gradient per parameter, in model.parameters() order."
            )
    out = []
    for (name, parameter), value in zip(named, values, strict=True):
        tensor = torch.as_tensor(np.asarray(_to_numpy(value)), dtype=parameter.dtype)
        if tuple(tensor.shape) != tuple(parameter.shape):
            raise ShapeMismatchError(
                f"gradient for {name} has shape {tuple(tensor.shape)}, the parameter "
                f"{tuple(parameter.shape)}. Fix: pass the gradients of this model's parameters."
            )
        if not torch.isfinite(tensor).all():
            raise NonFiniteValueError(
                f"gradient for {name} holds NaN or inf. Fix: pass a finite update."
            )
        out.append(tensor)
    return out


def _to_numpy(value: Any) -> Any:
    detach = getattr(value, "detach", None)
    return detach().cpu().numpy() if callable(detach) else value


def _infer_labels(gradients: list[torch.Tensor], num_classes: int) -> npt.NDArray[np.int64] | None:
    """iDLG: the label of a single example from the last layer's gradient, if it shows."""
    last = gradients[-1]
    if last.ndim == 1 and last.shape[0] == num_classes:
        signal = last  # bias: softmax - onehot, negative only at the label
    elif last.ndim == 2 and last.shape[0] == num_classes:
        signal = last.sum(dim=1)  # weight rows (p_j - y_j) h; h >= 0 after ReLU or sigmoid
    else:
        return None
    if not bool((signal < 0).any()):
        return None
    return np.array([int(signal.argmin())], dtype=np.int64)


def _first_layer_is_linear(model: torch.nn.Module, features: int) -> bool:
    """Whether the first parameterised layer is ``nn.Linear`` with bias on the flat input."""
    torch = require_torch("gradient inversion")
    parameters = [p for p in model.parameters() if p.requires_grad]
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            return (
                module.bias is not None
                and len(parameters) >= 2
                and module.weight is parameters[0]
                and module.bias is parameters[1]
                and module.in_features == features
            )
        if any(True for _ in module.parameters(recurse=False)):
            return False
    return False


def _analytic(gradients: list[torch.Tensor]) -> torch.Tensor:
    weight, bias = gradients[0].double(), gradients[1].double()
    denominator = float((bias * bias).sum())
    if denominator == 0.0:
        raise DPConfigurationError(
            "the first layer's bias gradient is all zero: the update carries no analytic "
            "signal. Fix: use method='dlg'."
        )
    return (bias @ weight) / denominator


def _dlg(
    model: torch.nn.Module,
    target: list[torch.Tensor],
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    batch_size: int,
    labels: npt.NDArray[np.int64] | None,
    iterations: int,
    distance: str,
    seed: int,
) -> tuple[torch.Tensor, npt.NDArray[np.int64], float]:
    torch = require_torch("gradient inversion")
    generator = torch.Generator().manual_seed(seed)
    dtype = target[0].dtype
    dummy = torch.randn((batch_size, *input_shape), generator=generator, dtype=dtype)
    dummy.requires_grad_(True)
    variables = [dummy]
    soft = None
    if labels is None:
        soft = torch.randn((batch_size, num_classes), generator=generator, dtype=dtype)
        soft.requires_grad_(True)
        variables.append(soft)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(
        variables, lr=1.0, max_iter=20, history_size=100, line_search_fn="strong_wolfe"
    )
    fixed = None if labels is None else torch.as_tensor(labels, dtype=torch.long)

    def mismatch() -> Any:
        logits = model(dummy)
        if fixed is not None:
            loss = torch.nn.functional.cross_entropy(logits, fixed)
        else:
            assert soft is not None
            log_probs = torch.log_softmax(logits, dim=1)
            loss = -(torch.softmax(soft, dim=1) * log_probs).sum(dim=1).mean()
        grads = torch.autograd.grad(loss, parameters, create_graph=True)
        return _distance(grads, target, distance)

    def closure() -> Any:
        optimizer.zero_grad()
        value = mismatch()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    for _ in range(iterations):
        value = float(optimizer.step(closure).detach())  # type: ignore[no-untyped-call]
        if not math.isfinite(value) or value < 1e-10:
            break
    final = max(0.0, float(mismatch().detach()))
    if fixed is not None:
        found = np.asarray(labels, dtype=np.int64)
    else:
        assert soft is not None
        found = soft.detach().argmax(dim=1).numpy().astype(np.int64)
    return dummy.detach(), found, final


def _distance(grads: Sequence[Any], target: list[Any], distance: str) -> Any:
    """``l2``: squared error relative to the target's squared norm; ``cosine``: 1 - cos."""
    if distance == "l2":
        error = sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
        return error / (float(sum((t**2).sum() for t in target)) or 1.0)
    grads, target = [g.double() for g in grads], [t.double() for t in target]  # 1 - cos in fp64
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norms = sum((g**2).sum() for g in grads) * sum((t**2).sum() for t in target)
    return 1 - dot / (norms.sqrt() + 1e-300)


def _gradient_distance(
    model: torch.nn.Module, inputs: torch.Tensor, labels: npt.NDArray[np.int64],
    target: list[torch.Tensor], distance: str,
) -> float:
    torch = require_torch("gradient inversion")
    parameters = [p for p in model.parameters() if p.requires_grad]
    logits = model(inputs.to(target[0].dtype))
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.long))
    grads = torch.autograd.grad(loss, parameters)
    return max(0.0, float(_distance(grads, target, distance)))


def _score(
    inputs: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    true_inputs: Any,
    true_labels: Any,
    data_range: float | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], float, float, float | None]:
    """Match reconstructions to the truth (Hungarian on MSE); MSE, PSNR, label accuracy."""
    truth = np.asarray(_to_numpy(true_inputs), dtype=np.float64).reshape(inputs.shape)
    flat, flat_truth = inputs.reshape(len(inputs), -1), truth.reshape(len(truth), -1)
    cost = ((flat[:, None, :] - flat_truth[None, :, :]) ** 2).mean(axis=2)
    if len(inputs) > 1:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        order = rows[np.argsort(cols)]
    else:
        order = np.array([0])
    inputs, labels = inputs[order], labels[order]
    mse = float(((inputs - truth) ** 2).mean())
    span = data_range if data_range is not None else float(truth.max() - truth.min()) or 1.0
    psnr = math.inf if mse == 0 else 10 * math.log10(span**2 / mse)
    label_accuracy = None
    if true_labels is not None:
        expected = np.asarray(_to_numpy(true_labels)).reshape(-1)
        label_accuracy = float((labels == expected).mean())
    return inputs, labels, mse, psnr, label_accuracy


def gradient_inversion(
    model: torch.nn.Module,
    gradients: Gradients,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    batch_size: int = 1,
    method: str = "auto",
    labels: Any = None,
    iterations: int = 50,
    distance: str = "cosine",
    true_inputs: Any = None,
    true_labels: Any = None,
    data_range: float | None = None,
    seed: int = 0,
) -> GradientInversionReport:
    """Rebuild the inputs (and labels) behind a shared gradient of ``model``.

    ``gradients`` is the update: one array or tensor per trainable parameter, in
    ``model.parameters()`` order (or a dict keyed by ``named_parameters()``
    names), of the mean cross-entropy over ``batch_size`` examples of shape
    ``input_shape``. ``method="auto"`` uses the analytic attack when the first
    layer is ``nn.Linear`` with a bias and the batch is one example, else DLG
    for ``iterations`` L-BFGS rounds of 20 steps, matching by ``distance``
    (``"cosine"`` or ``"l2"``; ``gradient_distance`` in the report is that
    distance at the end). Pass ``labels`` if known; otherwise they
    are read from the gradient (iDLG) or optimised (DLG). Pass ``true_inputs``
    (and ``true_labels``) to score the reconstruction.

    >>> import torch, pets
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(),
    ...                             torch.nn.Linear(8, 3))
    >>> x, y = torch.rand(1, 4), torch.tensor([2])
    >>> loss = torch.nn.functional.cross_entropy(model(x), y)
    >>> update = torch.autograd.grad(loss, list(model.parameters()))
    >>> inputs, labels = pets.attacks.gradient_inversion(model, update, input_shape=(4,),
    ...                                                  num_classes=3)
    >>> labels.tolist(), bool(abs(inputs - x.numpy()).max() < 1e-5)
    ([2], True)
    """
    torch = require_torch("gradient inversion")
    if method not in METHODS:
        raise DPConfigurationError(
            f"unknown method {method!r}. Fix: use one of {', '.join(METHODS)}."
        )
    if distance not in DISTANCES:
        raise DPConfigurationError(
            f"unknown distance {distance!r}. Fix: use one of {', '.join(DISTANCES)}."
        )
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ShapeMismatchError(
            f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}. "
            "Fix: pass the shape of one example, e.g. input_shape=(64,)."
        )
    num_classes = check_count(num_classes, name="num_classes", minimum=2, example=10)
    batch_size = check_count(batch_size, name="batch_size", minimum=1, example=1)
    iterations = check_count(iterations, name="iterations", minimum=1, example=50)
    target = _as_tensors(model, gradients)
    known = None
    if labels is not None:
        known = np.asarray(_to_numpy(labels), dtype=np.int64).reshape(-1)
        if len(known) != batch_size:
            raise ShapeMismatchError(
                f"got {len(known)} label(s) for batch_size={batch_size}. Fix: pass one "
                "label per example, or labels=None to infer them."
            )
    elif batch_size == 1:
        known = _infer_labels(target, num_classes)
    features = math.prod(shape)
    analytic_ok = batch_size == 1 and _first_layer_is_linear(model, features)
    if method == "analytic" and not analytic_ok:
        raise UnsupportedModelError([ModelIssue(
            where="gradient_inversion(method='analytic')",
            problem="the analytic attack needs one example and a first layer nn.Linear "
            f"with a bias taking the {features} flattened input features.",
            fix="use method='dlg'.",
        )])
    chosen = "analytic" if method == "auto" and analytic_ok else method
    if chosen == "auto":
        chosen = "dlg"
    if chosen == "analytic":
        inputs = _analytic(target).reshape(1, *shape).to(target[0].dtype)
        if known is None:
            with torch.no_grad():
                known = model(inputs).argmax(dim=1).numpy().astype(np.int64)
        assert known is not None
        found = known
        gap = _gradient_distance(model, inputs, found, target, distance)
    else:
        inputs, found, gap = _dlg(
            model, target, input_shape=shape, num_classes=num_classes, batch_size=batch_size,
            labels=known, iterations=iterations, distance=distance, seed=seed,
        )
    rebuilt = inputs.detach().double().numpy()
    if true_inputs is None:
        return GradientInversionReport(rebuilt, found, chosen, gap)
    rebuilt, found, mse, psnr, label_accuracy = _score(
        rebuilt, found, true_inputs, true_labels, data_range
    )
    return GradientInversionReport(rebuilt, found, chosen, gap, mse, psnr, label_accuracy)


def clip_and_noise(
    gradients: Gradients,
    *,
    max_grad_norm: float,
    noise_multiplier: float,
    seed: int | None = None,
) -> list[npt.NDArray[np.float64]]:
    """The DP-SGD defence on one update: clip its L2 norm to ``max_grad_norm``, add
    Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``.

    For measuring what the defence does to an attack; a real release should go
    through ``pets.dp`` (whose noise and accounting are vetted).

    >>> import numpy as np, pets
    >>> out = pets.attacks.clip_and_noise([np.array([3.0, 4.0])], max_grad_norm=1.0,
    ...                                   noise_multiplier=0.0)
    >>> out[0].round(6).tolist()
    [0.6, 0.8]
    """
    for name, value in (("max_grad_norm", max_grad_norm), ("noise_multiplier", noise_multiplier)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise DPConfigurationError(
                f"{name} must be a finite number >= 0, got {value!r}. Fix: pass e.g. "
                "max_grad_norm=1.0, noise_multiplier=1.0."
            )
    if max_grad_norm == 0:
        raise DPConfigurationError(
            "max_grad_norm must be > 0. Fix: pass the clipping bound, e.g. max_grad_norm=1.0."
        )
    values = list(gradients.values()) if isinstance(gradients, Mapping) else list(gradients)
    arrays = [np.asarray(_to_numpy(v), dtype=np.float64) for v in values]
    norm = math.sqrt(sum(float((a * a).sum()) for a in arrays))
    factor = min(1.0, max_grad_norm / norm) if norm > 0 else 1.0
    rng = np.random.default_rng(seed)
    sigma = noise_multiplier * max_grad_norm
    return [a * factor + rng.normal(0.0, sigma, a.shape) if sigma else a * factor
            for a in arrays]
