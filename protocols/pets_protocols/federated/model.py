"""The model every party trains: a small numpy MLP (or, with no hidden layer, logistic regression).

Plain numpy on purpose: a Flower ClientApp may start a fresh process for every
message (the deployment engine does), and numpy imports in milliseconds where
torch takes seconds. Parameters travel as an ordered ``{name: array}`` mapping,
the shape Flower's ``ArrayRecord`` holds; :func:`flatten` / :func:`unflatten`
turn it into the 1-D update vector that is clipped, noised and encrypted.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "Parameters",
    "accuracy",
    "flatten",
    "init_parameters",
    "predict",
    "train",
    "unflatten",
]

Parameters = dict[str, npt.NDArray[np.float64]]
"""Named weight arrays, in layer order: ``w0, b0, w1, b1, ...``."""


def init_parameters(sizes: Sequence[int], *, seed: int = 0) -> Parameters:
    """Glorot-uniform weights and zero biases for layer widths ``sizes`` (input first).

    >>> [p.shape for p in init_parameters([64, 32, 10]).values()]
    [(64, 32), (32,), (32, 10), (10,)]
    """
    rng = np.random.default_rng(seed)
    params: Parameters = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params[f"w{layer}"] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params[f"b{layer}"] = np.zeros(fan_out)
    return params


def _layers(params: Mapping[str, npt.NDArray[np.float64]]) -> int:
    return len(params) // 2


def _forward(
    params: Mapping[str, npt.NDArray[np.float64]], x: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]:
    """Activations of every layer, the input first and the logits last (ReLU between)."""
    outputs = [x]
    for layer in range(_layers(params)):
        z = outputs[-1] @ params[f"w{layer}"] + params[f"b{layer}"]
        outputs.append(np.maximum(z, 0.0) if layer < _layers(params) - 1 else z)
    return outputs


def predict(
    params: Mapping[str, npt.NDArray[np.float64]], x: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """The predicted class of each row of ``x``."""
    return np.argmax(_forward(params, x)[-1], axis=1)


def accuracy(
    params: Mapping[str, npt.NDArray[np.float64]],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
) -> float:
    """The share of rows of ``x`` classified as ``y``."""
    return float(np.mean(predict(params, x) == y)) if len(y) else 0.0


def train(
    params: Mapping[str, npt.NDArray[np.float64]],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    *,
    epochs: int,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[Parameters, float]:
    """``epochs`` of minibatch SGD on softmax cross-entropy; returns new parameters and the
    mean loss of the last epoch. ``params`` is not modified."""
    rng = np.random.default_rng(seed)
    weights = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    classes = weights[f"w{_layers(weights) - 1}"].shape[1]
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        losses = []
        # nearly equal batches: a last batch of one or two records would take a step as
        # large as a full batch's on a noisy gradient, and throw the model off
        for batch in np.array_split(order, max(1, round(len(y) / batch_size))):
            outputs = _forward(weights, x[batch])
            logits = outputs[-1] - outputs[-1].max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            onehot = np.eye(classes)[y[batch]]
            losses.append(float(-np.mean(np.sum(onehot * np.log(probs + 1e-12), axis=1))))
            grad = (probs - onehot) / len(batch)
            for layer in reversed(range(_layers(weights))):
                w = weights[f"w{layer}"]
                grad_w = outputs[layer].T @ grad
                grad_b = grad.sum(axis=0)
                if layer > 0:
                    grad = (grad @ w.T) * (outputs[layer] > 0)
                weights[f"w{layer}"] = w - lr * grad_w
                weights[f"b{layer}"] = weights[f"b{layer}"] - lr * grad_b
        loss = float(np.mean(losses)) if losses else 0.0
    return weights, loss


def flatten(params: Mapping[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """All parameters as one 1-D vector, in the mapping's order."""
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in params.values()])


def unflatten(
    vector: npt.NDArray[np.float64], template: Mapping[str, Sequence[int]]
) -> Parameters:
    """The inverse of :func:`flatten` for the names and shapes in ``template``.

    >>> params = init_parameters([4, 3])
    >>> shapes = {k: v.shape for k, v in params.items()}
    >>> all(np.array_equal(params[k], v) for k, v in unflatten(flatten(params), shapes).items())
    True
    """
    out: Parameters = {}
    offset = 0
    for name, shape in template.items():
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = np.asarray(vector[offset : offset + size], dtype=np.float64).reshape(shape)
        offset += size
    return out
