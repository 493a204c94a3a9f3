"""The data each client holds: scikit-learn's bundled digits, split across clients.

Two horizontal splits (every client has whole records, all features):

* ``"iid"``: a seeded random permutation dealt out evenly;
* ``"label"``: records sorted by label and cut into contiguous shards, so each
  client sees only a few classes (3 clients: about digits 0-3, 3-6, 6-9).

A client's test shard is always an even split of the held-out test set, so the
clients' accuracies weighted by their test sizes equal the accuracy on the
whole test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

import pets

__all__ = ["SPLITS", "Dataset", "Shard", "client_shard", "load_digits", "split_indices"]

SPLITS = ("iid", "label")


@dataclass(frozen=True)
class Shard:
    """One client's training and test records."""

    x_train: npt.NDArray[np.float64]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float64]
    y_test: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    """The pooled data: what a central trainer would hold."""

    x_train: npt.NDArray[np.float64]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float64]
    y_test: npt.NDArray[np.int64]

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def classes(self) -> int:
        return int(self.y_train.max()) + 1


@lru_cache(maxsize=4)
def load_digits(*, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """Digits (8x8 images, pixels scaled to [-1, 1]), a seeded stratified train/test split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 8.0 - 1.0  # pixels 0..16 -> [-1, 1]
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Dataset(x_train, y_train, x_test, y_test)


def split_indices(
    labels: npt.NDArray[np.int64], clients: int, how: str, *, seed: int = 0
) -> list[npt.NDArray[np.int64]]:
    """The record indices of each of ``clients`` shards under split ``how``.

    >>> shards = split_indices(np.array([0, 0, 1, 1, 2, 2]), 3, "label")
    >>> [s.tolist() for s in shards]
    [[0, 1], [2, 3], [4, 5]]
    """
    if how not in SPLITS:
        raise pets.ParameterError(
            f"unknown data split {how!r}; choose one of: {', '.join(SPLITS)}"
        )
    if not 1 <= clients <= len(labels):
        raise pets.ShapeMismatchError(
            f"cannot split {len(labels)} records across {clients} clients; "
            f"use between 1 and {len(labels)} clients"
        )
    if how == "iid":
        order = np.random.default_rng(seed).permutation(len(labels))
    else:
        order = np.argsort(labels, kind="stable")
    return [np.sort(part) for part in np.array_split(order, clients)]


def client_shard(
    partition: int, partitions: int, how: str = "iid", *, seed: int = 0
) -> Shard:
    """Client ``partition`` of ``partitions``: its training shard (split ``how``) and an
    even share of the test set."""
    data = load_digits(seed=seed)
    if not 0 <= partition < partitions:
        raise pets.ShapeMismatchError(
            f"partition {partition} does not exist among {partitions}; "
            f"pass a partition-id between 0 and {partitions - 1}"
        )
    train = split_indices(data.y_train, partitions, how, seed=seed)[partition]
    test = split_indices(data.y_test, partitions, "iid", seed=seed)[partition]
    return Shard(data.x_train[train], data.y_train[train], data.x_test[test], data.y_test[test])
