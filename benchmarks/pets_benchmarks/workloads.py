"""Shared workloads: data that ships with scikit-learn and small models trained here.

Nothing is downloaded: the digits set comes with scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from pets_protocols.workloads import DigitsData, digits, train_digits_mlp

__all__ = [
    "DigitsData",
    "accuracy",
    "cifar_like",
    "digits",
    "digits_28",
    "linear_weights",
    "train_cifar_cnn",
    "train_digits_mlp",
    "train_tutorial_cnn",
]


def linear_weights(net: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, b)`` of each ``nn.Linear`` in order, ``W`` as ``(in, out)``: ``x @ W + b``."""
    import torch

    return [
        (m.weight.detach().double().numpy().T, m.bias.detach().double().numpy())
        for m in net if isinstance(m, torch.nn.Linear)
    ]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


@lru_cache(maxsize=1)
def digits_28(seed: int = 0) -> DigitsData:
    """The digits upsampled to 28x28 (MNIST's geometry), one channel, in [0, 1]."""
    import torch

    data = digits(seed)

    def grow(x: np.ndarray) -> np.ndarray:
        images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
        big = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear",
                                              align_corners=False)
        return big.clamp(0, 1).numpy().astype(np.float64)

    return DigitsData(grow(data.x_train), data.y_train, grow(data.x_test), data.y_test)


def _train(model: Any, x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
           lr: float = 0.01) -> Any:
    import torch

    torch.manual_seed(seed)
    inputs = torch.tensor(x, dtype=torch.float32)
    targets = torch.tensor(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs)).split(64):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


def train_tutorial_cnn(*, epochs: int = 8, seed: int = 0) -> Any:
    """TenSEAL's tutorial MNIST CNN: conv 7x7 stride 3 (4 channels), square, FC 256-64,
    square, FC 64-10; trained here on :func:`digits_28`."""
    import torch
    from torch import nn

    import pets.nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=7, stride=3), pets.nn.Square(), nn.Flatten(),
        nn.Linear(256, 64), pets.nn.Square(), nn.Linear(64, 10),
    )
    data = digits_28()
    return _train(model, data.x_train, data.y_train, epochs, seed, lr=0.003)


@lru_cache(maxsize=1)
def cifar_like(seed: int = 0) -> DigitsData:
    """CIFAR-size inputs (3x32x32) made here: the digits upsampled, each colour channel
    scaled by its own random factor, plus noise; standardised. Labels are the digits'."""
    import torch

    data = digits(seed)
    rng = np.random.default_rng(seed)

    def make(x: np.ndarray) -> np.ndarray:
        images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
        big = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear",
                                              align_corners=False).numpy()
        colours = rng.uniform(0.5, 1.5, size=(len(x), 3, 1, 1))
        out = big * colours + rng.normal(0, 0.05, size=(len(x), 3, 32, 32))
        return np.asarray((out - 0.25) / 0.35, dtype=np.float64)

    return DigitsData(make(data.x_train), data.y_train, make(data.x_test), data.y_test)


def train_cifar_cnn(channels: tuple[int, int] = (8, 16), *, epochs: int = 3, seed: int = 0
                    ) -> Any:
    """A CIFAR-size CNN (3x32x32): two blocks of conv 3x3 + square + avg-pool 2, a linear
    head; trained briefly on :func:`cifar_like`."""
    import torch
    from torch import nn

    import pets.nn

    torch.manual_seed(seed)
    first, second = channels
    model = nn.Sequential(
        nn.Conv2d(3, first, 3, padding=1), pets.nn.Square(), nn.AvgPool2d(2),
        nn.Conv2d(first, second, 3, padding=1), pets.nn.Square(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(second * 8 * 8, 10),
    )
    data = cifar_like()
    return _train(model, data.x_train, data.y_train, epochs, seed, lr=0.002)
