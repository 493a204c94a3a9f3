"""Helpers shared by the attacks: lazy torch, option checks, accuracy intervals."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pets.dp._imports import require
from pets.dp.auditing.bounds import clopper_pearson
from pets.errors import DPConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "accuracy_interval",
    "check_confidence",
    "check_count",
    "predict_labels",
    "require_torch",
]

FloatArray = npt.NDArray[np.float64]


def require_torch(purpose: str) -> Any:
    """Import torch (attacks run on torch models) or say how to install it."""
    return require("torch", purpose=purpose)


def check_count(value: object, *, name: str, minimum: int, example: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; otherwise say what to pass."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DPConfigurationError(
            f"{name} must be an integer >= {minimum}, got {value!r}. Fix: pass e.g. "
            f"{name}={example}."
        )
    return int(value)


def check_confidence(confidence: object) -> float:
    """Return ``confidence`` if it is a float in [0.5, 1)."""
    if not (isinstance(confidence, float) and 0.5 <= confidence < 1):
        raise DPConfigurationError(
            f"confidence must be a float in [0.5, 1), got {confidence!r}. Fix: pass e.g. 0.95."
        )
    return confidence


def accuracy_interval(correct: int, trials: int, confidence: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for ``correct / trials`` at ``confidence``."""
    check_confidence(confidence)
    alpha = (1.0 - confidence) / 2
    low, high = clopper_pearson([correct], trials, alpha)
    return float(low[0]), float(high[0])


def predict_labels(classifier: Any, inputs: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Labels from a scikit-learn-style ``.predict``, a torch module, or a callable.

    A torch module's (or callable's) output of shape ``(n, classes)`` is read as
    scores and arg-maxed; a 1-D output is taken as labels.
    """
    predict: Callable[[Any], Any]
    torch_module = _torch_module_type()
    if torch_module is not None and isinstance(classifier, torch_module):
        torch = require_torch("scoring with a torch model")

        def predict(x: Any) -> Any:
            was_training = classifier.training
            classifier.eval()
            try:
                with torch.no_grad():
                    return classifier(torch.as_tensor(x, dtype=torch.float32)).numpy()
            finally:
                classifier.train(was_training)

    elif hasattr(classifier, "predict"):
        predict = classifier.predict
    elif callable(classifier):
        predict = classifier
    else:
        raise DPConfigurationError(
            f"cannot classify with a {type(classifier).__name__}. Fix: pass an object with "
            ".predict(X) (e.g. a fitted scikit-learn model), a torch module or a callable."
        )
    out = np.asarray(predict(inputs))
    if out.ndim == 2:
        out = out.argmax(axis=1)
    return out.astype(np.int64)


def _torch_module_type() -> type[torch.nn.Module] | None:
    """``torch.nn.Module`` if torch is loaded (an object cannot be a module otherwise)."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.nn.Module  # type: ignore[no-any-return]
