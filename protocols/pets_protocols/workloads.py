"""The demo workload the applications share: scikit-learn's digits and a small MLP.

``pets serve digits`` serves this model, ``pets infer`` sends these digits by default,
and the bench engine measures every technique on them. Nothing is downloaded: the
digits come with scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["DigitsData", "digits", "train_digits_mlp"]


@dataclass(frozen=True)
class DigitsData:
    """8x8 digit images flattened to 64 features in [0, 1], split 70/30."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=1)
def digits(seed: int = 0) -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.3, random_state=seed, stratify=y
    )
    return DigitsData(x_train, y_train, x_test, y_test)


def train_digits_mlp(hidden: int = 32, *, epochs: int = 60, seed: int = 0) -> Any:
    """The 64-``hidden``-10 MLP with a square activation (HE-friendly), trained on digits."""
    import torch

    import pets.nn

    torch.manual_seed(seed)
    data = digits()
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), pets.nn.Square(), torch.nn.Linear(hidden, 10)
    )
    x = torch.tensor(data.x_train, dtype=torch.float32)
    y = torch.tensor(data.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()
