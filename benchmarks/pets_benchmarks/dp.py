"""DP-SGD overhead: the same MLP on the same digits, non-private and at several epsilons.

One run trains every variant with the same seed, epochs and batch size and
reports time per epoch, accuracy and the epsilon spent, as ratios against the
non-private run. ``examples/dp_training.py`` and ``benchmarks/test_bench_dp.py``
use the same pieces.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets_benchmarks.report import Table

__all__ = ["DELTA", "DPReport", "accuracy", "digits_datasets", "make_mlp", "run_dp", "train"]

DELTA = 1e-5


def digits_datasets(seed: int = 0) -> tuple[Any, Any]:
    """Digits (1797 images of 8x8) standardised, split 75/25, as torch ``TensorDataset``s."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch.utils.data import TensorDataset

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)

    def tensors(features: np.ndarray, labels: np.ndarray) -> Any:
        return TensorDataset(
            torch.tensor(scaler.transform(features), dtype=torch.float32),
            torch.tensor(labels, dtype=torch.long),
        )

    return tensors(x_train, y_train), tensors(x_test, y_test)


def make_mlp(hidden: int = 64) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )


def accuracy(model: Any, data: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        return float((model(x).argmax(dim=1) == y).float().mean())


def run_epoch(model: Any, optimizer: Any, loader: Any) -> None:
    """One pass over ``loader`` (Poisson sampling may draw empty batches: skipped)."""
    import torch

    model.train()
    for x, y in loader:
        if len(y) == 0:
            continue
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()


@dataclass
class Training:
    """A model ready to train: private (wrapped by Opacus) or not."""

    model: Any
    optimizer: Any
    loader: Any
    private: Any = None  # pets.dp.PrivateTraining when epsilon is set


def prepare(train_set: Any, *, epochs: int, epsilon: float | None, batch_size: int = 64,
            max_grad_norm: float = 1.0, seed: int = 0, accountant: str = "rdp") -> Training:
    """The MLP, SGD and a loader; through ``pets.dp.make_private`` when ``epsilon`` is set."""
    import torch
    from torch.utils.data import DataLoader

    import pets.dp

    torch.manual_seed(seed)
    model = make_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5 if epsilon else 0.1)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    if epsilon is None:
        return Training(model, optimizer, loader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pets.dp.InsecureRNGWarning)
        private = pets.dp.make_private(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon,
            target_delta=DELTA, epochs=epochs, max_grad_norm=max_grad_norm,
            accountant=accountant,
        )
    return Training(private.module, private.optimizer, private.data_loader, private)


def train(train_set: Any, *, epochs: int, epsilon: float | None, seed: int = 0) -> Any:
    """Train the MLP for ``epochs``; with ``epsilon``, by DP-SGD at ``(epsilon, DELTA)``."""
    training = prepare(train_set, epochs=epochs, epsilon=epsilon, seed=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(epochs):
            run_epoch(training.model, training.optimizer, training.loader)
    return training.model


@dataclass
class DPReport:
    table: Table
    ratios: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [str(self.table), "", "ratios (same run):"]
        lines += [f"  {name:<50} {value:8.3g}" for name, value in self.ratios.items()]
        return "\n".join(lines)


#: what a DP-SGD row changes against the non-private one (same model, data, epochs, batch)
DP_DIFFERS = ("per-example gradients clipped and Gaussian noise added (Opacus); Poisson "
              "batches of the same expected size; SGD step 0.5 instead of 0.1 (DP-SGD's best)")


def run_dp(*, epsilons: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0), quick: bool = False,
           progress: Callable[[str], None] | None = None) -> DPReport:
    """Train non-private and at each epsilon; report time per epoch, accuracy, epsilon spent."""
    import torch

    say = progress or (lambda _msg: None)
    torch.set_num_threads(1)  # tiny models: one thread is fastest and fair to compare
    epochs = 3 if quick else 15
    train_set, test_set = digits_datasets()
    table = Table(["training", "epsilon target", "epsilon spent", "s per epoch", "vs plain",
                   "test accuracy", "differs from non-private SGD"])
    ratios: dict[str, float] = {}
    base_epoch = float("nan")
    warm = prepare(train_set, epochs=1, epsilon=None)  # torch's first-use costs, untimed
    run_epoch(warm.model, warm.optimizer, warm.loader)
    for epsilon in (None, *epsilons):
        name = "non-private SGD" if epsilon is None else "DP-SGD (Opacus)"
        say(f"{name}{'' if epsilon is None else f' at epsilon={epsilon:g}'}: {epochs} epochs")
        training = prepare(train_set, epochs=epochs, epsilon=epsilon)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(epochs):
                run_epoch(training.model, training.optimizer, training.loader)
        per_epoch = (time.perf_counter() - start) / epochs
        spent = training.private.epsilon(DELTA) if training.private else float("inf")
        acc = accuracy(training.model, test_set)
        if epsilon is None:
            base_epoch, base_acc = per_epoch, acc
        else:
            ratios[f"time per epoch at epsilon={epsilon:g} / non-private"] = per_epoch / base_epoch
            ratios[f"accuracy drop at epsilon={epsilon:g}, points"] = 100 * (base_acc - acc)
        table.add(name, "inf" if epsilon is None else epsilon, spent, per_epoch,
                  per_epoch / base_epoch, acc, "-" if epsilon is None else DP_DIFFERS)
    return DPReport(table, ratios)
