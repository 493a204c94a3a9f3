"""Model inversion (Fredrikson et al. 2015): a representative input of a class from confidences.

The *model inversion* threat of docs/threats.md. Starting from a blank input, the
attacker climbs the model's confidence in the target class,

    maximise  log p_class(x) - l2 * ||x||^2 - tv * TV(x)   subject to  x in bounds,

with projected Adam steps. The regularisers (an L2 pull towards zero and total
variation over ``image_shape``) keep the result looking like data rather than
an adversarial pattern. Two kinds of access:

* white-box: ``model`` is a ``torch.nn.Module`` and gradients come from autograd;
* black-box: ``model`` is any callable mapping a batch of inputs (numpy,
  ``(n, *input_shape)``) to class probabilities, as a prediction API would;
  gradients are estimated from ``2 * directions`` queries per step
  (antithetic Gaussian smoothing), and the queries are counted.

A reconstruction *succeeds* when an independent classifier (the ``evaluator``:
trained by the attacker on other data, e.g. a scikit-learn model fitted on a
disjoint split) recognises it as the target class. The report gives that rate
with a Clopper-Pearson interval, against chance ``1 / num_classes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pets.attacks._common import (
    accuracy_interval,
    check_confidence,
    check_count,
    predict_labels,
    require_torch,
)
from pets.errors import DPConfigurationError, ShapeMismatchError

if TYPE_CHECKING:
    import torch

__all__ = ["ModelInversionReport", "model_inversion"]


@dataclass(frozen=True, eq=False)
class ModelInversionReport:
    """Reconstructed class representatives and how recognisable they are.

    ``inputs[i]`` was built for class ``classes[i]``; the target model gives it
    confidence ``target_confidence[i]``. ``recognised`` is the share the
    evaluator labels as intended (``None`` without an evaluator), with its
    ``interval`` at ``confidence``; ``chance`` is ``1 / num_classes``.
    ``queries`` counts the model calls of a black-box attack (``None`` if white-box).
    """

    inputs: npt.NDArray[np.float64]
    classes: npt.NDArray[np.int64]
    target_confidence: npt.NDArray[np.float64]
    recognised: float | None
    interval: tuple[float, float] | None
    chance: float
    confidence: float
    queries: int | None = None

    @property
    def above_chance(self) -> bool:
        """Whether the interval's lower end beats chance: the model leaks its classes."""
        return self.interval is not None and self.interval[0] > self.chance

    def __str__(self) -> str:
        access = "white-box" if self.queries is None else f"black-box, {self.queries} queries"
        line = (
            f"model inversion ({access}): {len(self.inputs)} reconstruction(s) of "
            f"{len(set(self.classes.tolist()))} class(es), mean target confidence "
            f"{float(self.target_confidence.mean()):.3f}"
        )
        if self.recognised is not None and self.interval is not None:
            line += (
                f"; recognised by the evaluator {self.recognised:.1%} "
                f"[{self.interval[0]:.1%}, {self.interval[1]:.1%}] at {self.confidence:.0%} "
                f"(chance {self.chance:.1%})"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the inputs as nested lists)."""
        return {
            "attack": "model_inversion",
            "inputs": self.inputs.tolist(),
            "classes": self.classes.tolist(),
            "target_confidence": self.target_confidence.tolist(),
            "recognised": self.recognised,
            "interval": None if self.interval is None else list(self.interval),
            "chance": self.chance,
            "confidence": self.confidence,
            "queries": self.queries,
        }


def _total_variation(x: torch.Tensor, image_shape: tuple[int, ...] | None) -> torch.Tensor:
    if image_shape is None:
        return x.new_zeros(())
    images = x.reshape(len(x), *image_shape)
    down = (images[..., 1:, :] - images[..., :-1, :]).abs().sum()
    across = (images[..., :, 1:] - images[..., :, :-1]).abs().sum()
    return down + across


class _Objective:
    """Log-confidence of each row's class minus the regularisers, with its gradient."""

    def __init__(self, model: Any, classes: npt.NDArray[np.int64], *, l2: float, tv: float,
                 image_shape: tuple[int, ...] | None, directions: int, smoothing: float,
                 seed: int) -> None:
        self.torch = require_torch("model inversion")
        self.model, self.l2, self.tv, self.image_shape = model, l2, tv, image_shape
        self.classes = self.torch.as_tensor(classes, dtype=self.torch.long)
        self.white_box = isinstance(model, self.torch.nn.Module)
        self.directions, self.smoothing = directions, smoothing
        self.generator = self.torch.Generator().manual_seed(seed)
        self.queries = 0

    def log_confidence(self, x: torch.Tensor) -> torch.Tensor:
        """``log p_class(x)`` per row, through autograd (white-box) or a query (black-box)."""
        torch = self.torch
        if self.white_box:
            return torch.log_softmax(self.model(x), dim=1).gather(1, self.classes[:, None])[:, 0]
        self.queries += len(x)
        probabilities = np.asarray(self.model(x.detach().numpy()), dtype=np.float64)
        if probabilities.ndim != 2 or len(probabilities) != len(x):
            raise ShapeMismatchError(
                f"the model returned shape {probabilities.shape} for {len(x)} inputs. Fix: pass "
                "a callable returning class probabilities of shape (n, num_classes)."
            )
        picked = probabilities[np.arange(len(x)), self.classes.numpy()]
        return torch.as_tensor(np.log(np.clip(picked, 1e-300, 1.0)), dtype=x.dtype)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient of the objective (to be maximised) at ``x``."""
        torch = self.torch
        x = x.detach().requires_grad_(True)
        penalty = self.l2 * (x**2).sum() + self.tv * _total_variation(x, self.image_shape)
        if self.white_box:
            objective = self.log_confidence(x).sum() - penalty
            (grad,) = torch.autograd.grad(objective, [x])
            return grad
        (grad,) = torch.autograd.grad(-penalty, [x])
        estimate = torch.zeros_like(x)
        with torch.no_grad():
            for _ in range(self.directions):
                u = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
                up = self.log_confidence(x + self.smoothing * u)
                down = self.log_confidence(x - self.smoothing * u)
                shape = (len(x),) + (1,) * (x.ndim - 1)
                estimate += ((up - down) / (2 * self.smoothing)).reshape(shape) * u
        return grad + estimate / self.directions


def _check_options(l2: float, tv: float, lr: float, bounds: tuple[float, float] | None) -> None:
    for name, value in (("l2", l2), ("tv", tv)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise DPConfigurationError(
                f"{name} must be a finite number >= 0, got {value!r}. Fix: pass e.g. {name}=0.01."
            )
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise DPConfigurationError(f"lr must be a finite number > 0, got {lr!r}. Fix: lr=0.1.")
    if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
        raise DPConfigurationError(
            f"bounds must be (low, high) with low < high, got {bounds!r}. Fix: pass the "
            "input range, e.g. bounds=(0.0, 1.0), or bounds=None."
        )


def model_inversion(
    model: torch.nn.Module | Callable[[npt.NDArray[np.float64]], Any],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    evaluator: Any = None,
    classes: Sequence[int] | None = None,
    samples_per_class: int = 1,
    steps: int = 200,
    lr: float = 0.1,
    l2: float = 0.0,
    tv: float = 0.0,
    image_shape: Sequence[int] | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    directions: int = 20,
    smoothing: float = 0.01,
    confidence: float = 0.95,
    seed: int = 0,
) -> ModelInversionReport:
    """Reconstruct a representative input of each class in ``classes`` from ``model``.

    Of the ``samples_per_class`` reconstructions of a class, the first starts
    from a blank input (the low end of ``bounds``, as Fredrikson et al.), the
    others from uniform noise within ``bounds``; each takes
    ``steps`` Adam steps of size ``lr``. ``evaluator`` (``.predict(X)``, a torch
    module or a callable) judges whether each is recognisable as its class;
    it should be trained on data the target did not see.

    >>> import torch, pets
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Linear(4, 2)
    >>> report = pets.attacks.model_inversion(model, input_shape=(4,), num_classes=2,
    ...                                       evaluator=model, steps=20)
    >>> report.recognised, report.chance
    (1.0, 0.5)
    """
    torch = require_torch("model inversion")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ShapeMismatchError(
            f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}. "
            "Fix: pass the shape of one example, e.g. input_shape=(64,)."
        )
    num_classes = check_count(num_classes, name="num_classes", minimum=2, example=10)
    samples_per_class = check_count(samples_per_class, name="samples_per_class", minimum=1,
                                    example=1)
    steps = check_count(steps, name="steps", minimum=1, example=200)
    directions = check_count(directions, name="directions", minimum=1, example=20)
    _check_options(l2, tv, lr, bounds)
    confidence = check_confidence(confidence)
    picture = None if image_shape is None else tuple(int(s) for s in image_shape)
    if picture is not None and (len(picture) < 2 or math.prod(picture) != math.prod(shape)):
        raise ShapeMismatchError(
            f"image_shape {image_shape!r} must have >= 2 axes and as many values as "
            f"input_shape {shape}. Fix: pass e.g. image_shape=(8, 8) for 64 features."
        )
    wanted = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not wanted or any(not 0 <= c < num_classes for c in wanted):
        raise DPConfigurationError(
            f"classes must be labels in [0, {num_classes}), got {classes!r}. "
            "Fix: pass some of range(num_classes), or classes=None for all."
        )
    targets = np.repeat(np.array(wanted, dtype=np.int64), samples_per_class)
    objective = _Objective(model, targets, l2=float(l2), tv=float(tv), image_shape=picture,
                           directions=directions, smoothing=smoothing, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    if bounds is not None:
        low, high = bounds
        start = low + (high - low) * torch.rand((len(targets), *shape), generator=generator)
        start[::samples_per_class] = low  # the first of each class: a blank input
    else:
        start = torch.randn((len(targets), *shape), generator=generator)
        start[::samples_per_class] = 0.0
    x = start.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        x.grad = -objective.gradient(x)
        optimizer.step()
        if bounds is not None:
            with torch.no_grad():
                x.clamp_(low, high)
    x = x.detach()
    with torch.no_grad():
        queries_before = objective.queries
        reached = objective.log_confidence(x).exp().double().numpy()
        objective.queries = queries_before  # the final scoring is the attacker's own check
    rebuilt = x.double().numpy()
    recognised = interval = None
    if evaluator is not None:
        predicted = predict_labels(evaluator, rebuilt.reshape(len(rebuilt), *shape))
        correct = int((predicted == targets).sum())
        recognised = correct / len(targets)
        interval = accuracy_interval(correct, len(targets), confidence)
    return ModelInversionReport(
        inputs=rebuilt,
        classes=targets,
        target_confidence=reached,
        recognised=recognised,
        interval=interval,
        chance=1.0 / num_classes,
        confidence=confidence,
        queries=None if objective.white_box else objective.queries,
    )
