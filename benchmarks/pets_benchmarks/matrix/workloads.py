"""The same work for every technique: dot products, matmuls, three models, one training run.

Every workload is built once per run, in the parent process, from data that
ships with scikit-learn (digits, breast cancer) or is drawn from a seeded
generator, and the models are trained here in the clear. A technique gets the
arrays and the trained weights (plain numpy, so they travel to party
processes), and its outputs are compared with the plaintext cell's.

* ``dot-n``: one private vector ``x`` in [0, 1]^n times plain weights ``w``;
* ``matmul-n``: private ``X`` (rows x n) in [0, 1] times a plain ``n x out`` matrix;
* ``logreg``: logistic regression (30 -> 1, sigmoid) on breast-cancer test records;
* ``mlp``: the digits MLP 64-32-10 with a square activation (the HE-friendly one);
* ``cnn``: a small CNN on the 8x8 digits (3x3 convolution, 4 channels, square,
  2x2 average pooling, linear 36 -> 10; average pooling because HE cannot take maxima);
* ``mlp-train``: training the digits MLP 64-32-10 (ReLU) from one initialisation,
  for the same epochs, batch size and step size.

>>> from pets_benchmarks.matrix.config import MatrixConfig
>>> [w.key for w in plan(MatrixConfig.tiny())]
['dot-16', 'matmul-16', 'logreg', 'mlp', 'cnn', 'mlp-train']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from pets_benchmarks.matrix.config import MatrixConfig

__all__ = [
    "LINEAR", "INFERENCE", "TRAINING", "Workload", "build", "make_net", "plan", "predictions",
    "accuracy_of", "fit_batches", "load_net", "state_of", "train_classifier",
]

LINEAR, INFERENCE, TRAINING = "linear", "inference", "training"

#: what each model workload runs, in words (for the report)
MODELS = {
    "logreg": "logistic regression 30 -> 1, sigmoid (breast cancer)",
    "mlp": "digits MLP 64-32-10, square activation",
    "cnn": "digits CNN: conv 3x3 (4 ch), square, avg-pool 2, linear 36 -> 10",
    "mlp-relu": "digits MLP 64-32-10, ReLU",
}


@dataclass
class Workload:
    """One row of the matrix: its data, and for models the trained weights."""

    key: str
    title: str
    kind: str
    #: the model architecture (a key of :data:`MODELS`), for model workloads
    arch: str = ""
    #: the timed input (rows x features) and, for classifiers, its labels
    x: Any = None
    labels: Any = None
    #: the plain weight matrix of a linear workload (n x out)
    weight: Any = None
    #: plaintext-trained weights (inference), or the initial weights (training)
    state: dict[str, Any] = field(default_factory=dict)
    #: data the model was trained on (the DP twin trains on it; ranges calibrate on it)
    x_train: Any = None
    y_train: Any = None
    #: the whole held-out test set (training accuracy; notes of the inference cells)
    x_test: Any = None
    y_test: Any = None
    #: the L1 change of the output when one input value moves within [0, 1]
    sensitivity: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.x) if self.x is not None else 0


def plan(config: MatrixConfig) -> list[Workload]:
    """The workloads of ``config``, without data (cheap: for listing and skipping)."""
    items = [Workload(f"dot-{n}", f"dot product, n={n}", LINEAR) for n in config.dot_sizes]
    items += [Workload(f"matmul-{n}", f"matmul ({config.matmul_rows} x {n}) @ ({n} x "
                       f"{config.matmul_out})", LINEAR) for n in config.matmul_sizes]
    items += [Workload(arch, f"{MODELS[arch]}, {config.inference_rows} test samples",
                       INFERENCE, arch=arch) for arch in ("logreg", "mlp", "cnn")]
    items.append(Workload("mlp-train", f"training: {MODELS['mlp-relu']}, {config.train_rows} "
                          f"digits, {config.train_epochs} epoch(s), batch {config.train_batch}",
                          TRAINING, arch="mlp-relu"))
    return items


def build(config: MatrixConfig) -> list[Workload]:
    """The workloads of ``config`` with their data and plaintext-trained models."""
    rng = np.random.default_rng(config.seed)
    items = plan(config)
    for item in items:
        if item.kind == LINEAR:
            rows, width = (1, int(item.key.split("-")[1])) if item.key.startswith("dot") else (
                config.matmul_rows, int(item.key.split("-")[1]))
            out = 1 if item.key.startswith("dot") else config.matmul_out
            item.x = rng.uniform(0.0, 1.0, (rows, width))
            item.weight = rng.uniform(-1.0, 1.0, (width, out)) / np.sqrt(width)
            item.sensitivity = float(np.abs(item.weight).sum(axis=1).max())
        elif item.kind == INFERENCE:
            x_train, y_train, x_test, y_test = _dataset(item.arch, config.seed)
            item.x_train, item.y_train = x_train, y_train
            item.x, item.labels = x_test[: config.inference_rows], y_test[: config.inference_rows]
            item.x_test, item.y_test = x_test, y_test
            item.state = train_classifier(item.arch, x_train, y_train,
                                          epochs=config.model_epochs, seed=config.seed)
        else:
            x_train, y_train, x_test, y_test = _dataset("mlp", config.seed)
            item.x, item.labels = x_train[: config.train_rows], y_train[: config.train_rows]
            item.x_train, item.y_train = item.x, item.labels
            item.x_test, item.y_test = x_test, y_test
            item.state = state_of(make_net(item.arch, seed=config.seed))
    return items


def _dataset(arch: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if arch == "logreg":
        return _breast_cancer(seed)
    from pets_benchmarks.workloads import digits

    data = digits(seed)
    return data.x_train, data.y_train, data.x_test, data.y_test


@lru_cache(maxsize=2)
def _breast_cancer(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Breast cancer (569 x 30), split 70/30, standardised by the training set's statistics."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def make_net(arch: str, *, seed: int | None = None) -> Any:
    """A fresh torch model of architecture ``arch`` (seeded initial weights if ``seed``)."""
    import torch
    from torch import nn

    import pets.nn

    if seed is not None:
        torch.manual_seed(seed)
    if arch == "logreg":
        return nn.Sequential(nn.Linear(30, 1), nn.Sigmoid())
    if arch == "mlp":
        return nn.Sequential(nn.Linear(64, 32), pets.nn.Square(), nn.Linear(32, 10))
    if arch == "mlp-relu":
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    if arch == "cnn":
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), pets.nn.Square(),
                             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 10))
    raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(MODELS)}")


def state_of(net: Any) -> dict[str, np.ndarray]:
    """A model's weights as numpy arrays (they pickle to party processes)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def load_net(arch: str, state: dict[str, np.ndarray]) -> Any:
    """The model ``arch`` with weights ``state``, in eval mode."""
    import torch

    net = make_net(arch)
    net.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    return net.eval()


def loss_fn(arch: str) -> Any:
    import torch

    if arch == "logreg":
        return lambda out, y: torch.nn.functional.binary_cross_entropy(out[:, 0], y.float())
    return torch.nn.functional.cross_entropy


def fit_batches(count: int, epochs: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The row indices of each batch ``PrivateModel.fit(..., seed=seed)`` steps through: one
    ``numpy.random.default_rng(seed)`` permutation per epoch, cut into sorted batches.

    >>> [b.tolist() for b in fit_batches(4, 1, 2, seed=0)]
    [[0, 2], [1, 3]]
    """
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(epochs):
        order = rng.permutation(count)
        batches += [np.sort(order[i : i + batch_size]) for i in range(0, count, batch_size)]
    return batches


def train_classifier(arch: str, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int,
                     optimizer: str = "adam", lr: float | None = None, batch_size: int = 64,
                     initial: dict[str, np.ndarray] | None = None,
                     private: Any = None, fit_order: bool = False) -> dict[str, np.ndarray]:
    """Train ``arch`` in the clear (Adam, or SGD at ``lr``) and return its weights.

    ``initial`` weights, else a seeded initialisation; ``private(net, optimizer, loader)``
    may wrap the three for DP-SGD and return them. ``fit_order``: step through the batches
    of :func:`fit_batches` (those of ``PrivateModel.fit`` with the same seed) instead of a
    torch loader's shuffle, so that a private training and this reference see the same
    batches in the same order.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    net = make_net(arch, seed=seed) if initial is None else load_net(arch, initial)
    if optimizer == "sgd":
        opt: Any = torch.optim.SGD(net.parameters(), lr=lr or 0.1)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr or (0.05 if arch == "logreg" else 0.01))
    data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    net.train()
    module = net
    if private is not None:
        module, opt, loader = private(net, opt, loader)
    loss = loss_fn(arch)
    if fit_order:
        features, labels = data.tensors
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for index in fit_batches(len(labels), epochs, batch_size, seed):
                chosen = torch.as_tensor(index)
                opt.zero_grad()
                loss(module(features[chosen]), labels[chosen]).backward()
                opt.step()
        return state_of(net)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(epochs):
            for batch_x, batch_y in loader:
                if len(batch_y) == 0:  # Poisson sampling (DP-SGD) may draw an empty batch
                    continue
                opt.zero_grad()
                loss(module(batch_x), batch_y).backward()
                opt.step()
    return state_of(net)


def accuracy_of(arch: str, state: dict[str, np.ndarray], x: np.ndarray,
                  y: np.ndarray) -> float:
    """Accuracy of the weights ``state`` on ``(x, y)``, computed in the clear."""
    import torch

    with torch.no_grad():
        outputs = load_net(arch, state)(torch.tensor(x, dtype=torch.float32)).numpy()
    return float((predictions(arch, outputs) == y).mean())


def predictions(arch: str, outputs: np.ndarray) -> np.ndarray:
    """Class predictions from model outputs (probability > 0.5 for the logistic regression)."""
    outputs = np.asarray(outputs)
    if arch == "logreg":
        return (outputs.reshape(len(outputs), -1)[:, 0] > 0.5).astype(int)
    return outputs.reshape(len(outputs), -1).argmax(axis=1)
