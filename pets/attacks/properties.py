"""Property inference (Ganju et al. 2018): a fact about the training set that was never a label.

The *property inference* threat of docs/threats.md, e.g. "did this hospital's
training data hold more than 20% of patients with condition C?". The attacker
can draw data sets with and without the property and train the same kind of
model on each (*shadow models*). A meta-classifier then learns to tell the two
kinds of model apart from

* ``features="parameters"`` (white-box): the parameters, in a form that does
  not change when hidden neurons are permuted, since a network is the same
  function under any permutation of its hidden units (Ganju et al.'s
  observation, which they answer with set representations). For a chain of
  ``nn.Linear`` layers pets uses the affine map the chain computes with its
  activations removed (``W_L ... W_1`` and its bias); for other models, the
  flattened parameters with each hidden layer's neurons sorted;
* ``features="outputs"``: the model's class log-probabilities on fixed probe
  inputs (black-box access; logs, because probabilities saturate near 0 and 1
  and hide the shift a training set's make-up causes).

The attack is scored on held-out target models, half with the property and
half without, trained exactly like the shadows: its accuracy, with a
Clopper-Pearson interval, against the 50% of a coin flip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pets.attacks._common import accuracy_interval, check_confidence, check_count, require_torch
from pets.errors import DPConfigurationError, ShapeMismatchError

if TYPE_CHECKING:
    import torch

__all__ = ["PropertyInferenceReport", "class_share_sampler", "property_inference"]

Data = tuple[Any, Any]
Sampler = Callable[[np.random.Generator], Data]
TrainFn = Callable[[Any, Any], "torch.nn.Module"]
FEATURES = ("outputs", "parameters")


@dataclass(frozen=True)
class PropertyInferenceReport:
    """How well a meta-classifier tells models trained with the property from those without.

    ``accuracy`` on ``n_targets`` held-out targets, its two-sided ``interval``
    at ``confidence``, and ``p_value``: the chance of doing at least this well
    by coin flips (one-sided binomial test against ``chance`` = 0.5).
    """

    accuracy: float
    interval: tuple[float, float]
    p_value: float
    chance: float
    n_targets: int
    n_shadows: int
    features: str
    confidence: float

    @property
    def above_chance(self) -> bool:
        """Whether the interval's lower end beats a coin flip: the property leaks."""
        return self.interval[0] > self.chance

    def __str__(self) -> str:
        return (
            f"property inference ({self.features}, {self.n_shadows} shadow models): accuracy "
            f"{self.accuracy:.1%} [{self.interval[0]:.1%}, {self.interval[1]:.1%}] at "
            f"{self.confidence:.0%} on {self.n_targets} targets (chance {self.chance:.0%}, "
            f"p = {self.p_value:.2g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {"attack": "property_inference", **{
            "accuracy": self.accuracy, "interval": list(self.interval), "p_value": self.p_value,
            "chance": self.chance, "n_targets": self.n_targets, "n_shadows": self.n_shadows,
            "features": self.features, "confidence": self.confidence,
        }}


def class_share_sampler(x: Any, y: Any, *, label: int, share: float, size: int) -> Sampler:
    """A sampler of ``size``-example training sets in which ``share`` of the rows have ``label``.

    >>> import numpy as np
    >>> from pets.attacks import class_share_sampler
    >>> draw = class_share_sampler(np.zeros((100, 2)), np.arange(100) % 4, label=0, share=0.5,
    ...                            size=20)
    >>> float((draw(np.random.default_rng(0))[1] == 0).mean())
    0.5
    """
    features, labels = np.asarray(x), np.asarray(y)
    size = check_count(size, name="size", minimum=2, example=200)
    if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
        raise DPConfigurationError(
            f"share must be a fraction in [0, 1], got {share!r}. Fix: pass e.g. share=0.3."
        )
    inside, outside = np.flatnonzero(labels == label), np.flatnonzero(labels != label)
    wanted = round(share * size)
    if wanted > len(inside) or size - wanted > len(outside):
        raise DPConfigurationError(
            f"a {size}-row set with {share:.0%} label {label} needs {wanted} rows with the "
            f"label and {size - wanted} without; the data has {len(inside)} and "
            f"{len(outside)}. Fix: pass a smaller size."
        )

    def draw(rng: np.random.Generator) -> Data:
        rows = np.concatenate([rng.choice(inside, wanted, replace=False),
                               rng.choice(outside, size - wanted, replace=False)])
        rows = rng.permutation(rows)
        return features[rows], labels[rows]

    return draw


def _parameter_features(model: torch.nn.Module) -> npt.NDArray[np.float64]:
    """Parameters as features that do not change when hidden neurons are permuted.

    A chain of ``nn.Linear`` layers gives the affine map it computes with its
    activations removed: ``W_L ... W_1`` and the bias carried through it. Any
    other model gives its flattened parameters, with the outputs of each
    ``nn.Linear`` but the last sorted by incoming weight and bias (and the next
    layer's inputs permuted to match).
    """
    torch = require_torch("property inference")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    others = [p for m in model.modules() if not isinstance(m, torch.nn.Linear)
              for p in m.parameters(recurse=False)]
    weights = [m.weight.detach().double().numpy() for m in linears]
    biases = [np.zeros(len(w)) if m.bias is None else m.bias.detach().double().numpy()
              for m, w in zip(linears, weights, strict=True)]
    chained = all(a.shape[0] == b.shape[1] for a, b in itertools.pairwise(weights))
    if linears and chained and not others:
        matrix, offset = weights[0], biases[0]
        for weight, bias in zip(weights[1:], biases[1:], strict=True):
            matrix, offset = weight @ matrix, weight @ offset + bias
        return np.concatenate([matrix.ravel(), offset])
    parts: list[npt.NDArray[np.float64]] = []
    incoming: npt.NDArray[np.int64] | None = None  # how the previous layer's outputs were sorted
    for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        if incoming is not None and weight.shape[1] == len(incoming):
            weight = weight[:, incoming]
        if index < len(linears) - 1:
            incoming = np.argsort(weight.sum(axis=1) + bias, kind="stable")
            weight, bias = weight[incoming], bias[incoming]
        parts.extend([weight.ravel(), bias])
    parts.extend(p.detach().double().numpy().ravel() for p in others)
    return np.concatenate(parts) if parts else np.zeros(0)


def _outputs(model: torch.nn.Module, probe: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    torch = require_torch("property inference")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.as_tensor(probe, dtype=torch.float32))
    finally:
        model.train(was_training)
    return torch.log_softmax(logits.double(), dim=1).numpy().ravel()


class _MetaClassifier:
    """L2-regularised logistic regression on standardised features (Newton steps)."""

    def __init__(self, penalty: float = 1.0) -> None:
        self.penalty = penalty

    def fit(self, features: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]) -> None:
        self.mean = features.mean(axis=0)
        self.scale = features.std(axis=0) + 1e-12
        z = self._design(features)
        # dual form: fewer models than features, so work with the n x n kernel
        kernel = z @ z.T
        alpha = np.zeros(len(z))
        for _ in range(50):
            p = _sigmoid(kernel @ alpha)
            w = p * (1 - p) + 1e-9
            gradient = kernel @ (p - labels) + self.penalty * kernel @ alpha
            hessian = kernel * w[None, :] @ kernel + self.penalty * kernel
            step = np.linalg.lstsq(hessian + 1e-9 * np.eye(len(z)), gradient, rcond=None)[0]
            alpha -= step
            if np.abs(step).max() < 1e-8:
                break
        self.weights = z.T @ alpha

    def _design(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = (features - self.mean) / self.scale
        return np.hstack([z, np.ones((len(z), 1))]) / math.sqrt(z.shape[1])

    def probability(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _sigmoid(self._design(features) @ self.weights)


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _binomial_p_value(correct: int, trials: int) -> float:
    from scipy.stats import binom

    return float(binom.sf(correct - 1, trials, 0.5))


def property_inference(
    train_fn: TrainFn,
    with_property: Sampler,
    without_property: Sampler,
    *,
    num_shadows: int = 16,
    num_targets: int = 16,
    features: str = "outputs",
    probe: Any = None,
    probe_size: int = 64,
    confidence: float = 0.95,
    seed: int = 0,
) -> PropertyInferenceReport:
    """Train shadow models with and without a property, and test a meta-classifier on targets.

    ``train_fn(X, y) -> nn.Module`` trains a model the way the target is trained;
    ``with_property(rng)`` / ``without_property(rng)`` draw a training set
    (X, y) with / without the property (see :func:`class_share_sampler`).
    ``num_shadows`` and ``num_targets`` models of *each* kind are trained, the
    targets on fresh draws. ``features`` is ``"outputs"`` (class log-probabilities on
    ``probe`` inputs; by default ``probe_size`` rows drawn from both samplers) or
    ``"parameters"``.

    >>> import numpy as np, torch, pets
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> def train(X, y):
    ...     torch.manual_seed(0)
    ...     model = torch.nn.Linear(2, 2)
    ...     optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ...     for _ in range(20):
    ...         optimizer.zero_grad()
    ...         loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(X)),
    ...                                                  torch.as_tensor(y))
    ...         loss.backward()
    ...         optimizer.step()
    ...     return model
    >>> report = pets.attacks.property_inference(
    ...     train, pets.attacks.class_share_sampler(x, y, label=1, share=0.8, size=50),
    ...     pets.attacks.class_share_sampler(x, y, label=1, share=0.2, size=50),
    ...     num_shadows=4, num_targets=4)
    >>> report.accuracy, report.above_chance
    (1.0, True)
    """
    num_shadows = check_count(num_shadows, name="num_shadows", minimum=2, example=16)
    num_targets = check_count(num_targets, name="num_targets", minimum=1, example=16)
    probe_size = check_count(probe_size, name="probe_size", minimum=1, example=64)
    confidence = check_confidence(confidence)
    if features not in FEATURES:
        raise DPConfigurationError(
            f"unknown features {features!r}. Fix: use one of {', '.join(FEATURES)}."
        )
    rng = np.random.default_rng(seed)
    if features == "outputs":
        if probe is None:
            half = (probe_size + 1) // 2
            drawn = [np.asarray(s(rng)[0]) for s in (with_property, without_property)]
            probe = np.concatenate([drawn[0][:half], drawn[1][: probe_size - half]])
        probe = np.asarray(probe)
        if probe.ndim < 2 or len(probe) == 0:
            raise ShapeMismatchError(
                f"probe must be a batch of inputs (rows first), got shape {probe.shape}. "
                "Fix: pass probe=X[:64], or probe=None to draw it."
            )

    def describe(model: torch.nn.Module) -> npt.NDArray[np.float64]:
        if features == "outputs":
            return _outputs(model, probe)
        return _parameter_features(model)

    def train_many(count: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        rows, labels = [], []
        for _ in range(count):
            for has_property, sampler in ((1.0, with_property), (0.0, without_property)):
                rows.append(describe(train_fn(*sampler(rng))))
                labels.append(has_property)
        return np.stack(rows), np.array(labels)

    shadow_x, shadow_y = train_many(num_shadows)
    meta = _MetaClassifier()
    meta.fit(shadow_x, shadow_y)
    target_x, target_y = train_many(num_targets)
    guesses = meta.probability(target_x) >= 0.5
    correct = int((guesses == (target_y == 1.0)).sum())
    trials = len(target_y)
    return PropertyInferenceReport(
        accuracy=correct / trials,
        interval=accuracy_interval(correct, trials, confidence),
        p_value=_binomial_p_value(correct, trials),
        chance=0.5,
        n_targets=trials,
        n_shadows=len(shadow_y),
        features=features,
        confidence=confidence,
    )
