"""Models from where users have them: DP-SGD training results and scikit-learn estimators.

``pets.compile`` takes a torch module or an exported program; this turns the
other things users hold into one:

* what :func:`pets.dp.make_private` returns (its ``module``), and Opacus'
  ``GradSampleModule`` (the module it wraps: its per-sample-gradient hooks are
  for training only, and fx cannot trace through them);
* fitted scikit-learn linear models (``LinearRegression``, ``Ridge``, ``Lasso``,
  ``LogisticRegression``, ``LinearSVC``, ``SGDClassifier``...: ``coef_`` and
  ``intercept_``) as one ``nn.Linear`` giving the decision function, and
  ``MLPClassifier`` / ``MLPRegressor`` as ``nn.Sequential`` of their layers and
  activations. Classifiers return scores, like the decision function: take
  ``argmax`` (or the sign for two classes) of the decrypted output.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
>>> net = as_module(LogisticRegression().fit(x, y))
>>> bool(np.allclose(net(torch.tensor(x)).detach().numpy()[:, 0],
...                  LogisticRegression().fit(x, y).decision_function(x)))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pets.errors import CompileError

__all__ = ["as_module"]

_SKLEARN_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid,
                        "identity": nn.Identity}


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    weight = np.atleast_2d(np.asarray(weight, dtype=np.float64))
    bias = np.atleast_1d(np.asarray(bias, dtype=np.float64))
    layer = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (weight.shape[0],)).copy()))
    return layer


def _from_sklearn(estimator: Any) -> nn.Module | None:
    module = type(estimator).__module__
    if not module.startswith("sklearn."):
        return None
    name = type(estimator).__name__
    if name in ("MLPClassifier", "MLPRegressor"):
        if not hasattr(estimator, "coefs_"):
            raise CompileError(f"this {name} is not fitted; call fit(x, y) before compiling it")
        activation = _SKLEARN_ACTIVATIONS.get(estimator.activation)
        if activation is None:
            raise CompileError(f"{name}(activation={estimator.activation!r}) has no torch "
                               "equivalent pets knows")
        layers: list[nn.Module] = []
        for index, (w, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_, strict=True)):
            if index:
                layers.append(activation())
            layers.append(_linear(np.asarray(w).T, b))
        return nn.Sequential(*layers).double().eval()
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        return nn.Sequential(_linear(estimator.coef_, estimator.intercept_)).double().eval()
    if hasattr(estimator, "coef_") or hasattr(estimator, "fit"):
        raise CompileError(
            f"pets compiles scikit-learn linear models and MLPClassifier/MLPRegressor; "
            f"{name} is " + ("not fitted: call fit(x, y) first" if not hasattr(
                estimator, "n_features_in_") else "neither")
        )
    return None


def as_module(source: Any) -> Any:
    """A torch module (or exported program) for ``source`` (see the module docstring)."""
    if isinstance(source, torch.export.ExportedProgram):
        return source
    inner = getattr(source, "module", None)  # pets.dp.PrivateTraining
    if type(source).__name__ == "PrivateTraining" and isinstance(inner, nn.Module):
        source = inner
    if isinstance(source, nn.Module) and type(source).__name__ in (
        "GradSampleModule", "GradSampleModuleExpandedWeights", "DPDDP"
    ):
        wrapped = getattr(source, "_module", None) or getattr(source, "module", None)
        if isinstance(wrapped, nn.Module):
            return wrapped
    if isinstance(source, nn.Module):
        return source
    converted = _from_sklearn(source)
    return source if converted is None else converted
