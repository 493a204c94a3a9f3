"""The work every technique is assessed on: digits, one small MLP, two ways to train it.

The data are scikit-learn's 8x8 digits (pixels scaled to [0, 1]), dealt once by a
seeded permutation into disjoint parts: the *members* a model trains on, as many
*non-members* (membership inference's negatives), a *test* set (accuracy and
queries), the *attacker's* own rows (the independent classifier that judges whether
an attack recognised a record's digit) and the *reference* rest (shadow models). The
*collected* records are members, non-members and reference (up to ``collected``).

The model is the 64-32-10 MLP with a square activation: a polynomial, so CKKS
evaluates it exactly, MPC evaluates it exactly, and Opacus trains it. ``none`` trains
it with Adam for many epochs (it memorises, as models do); ``dp`` with DP-SGD through
``pets.dp.make_private``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pets_benchmarks.assess.config import AssessConfig

__all__ = [
    "Data",
    "Trained",
    "Workload",
    "accuracy",
    "evaluator",
    "make_model",
    "one_thread",
    "train_dp",
    "train_plain",
]

Data = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (tiny models train many times faster so), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Workload:
    """The digits, dealt into disjoint parts (see the module docstring)."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    members: npt.NDArray[np.int64]
    non_members: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    attacker: npt.NDArray[np.int64]
    reference: npt.NDArray[np.int64]
    collected: npt.NDArray[np.int64]

    @classmethod
    def load(cls, config: AssessConfig) -> Workload:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(config.seed).permutation(len(x))
        cuts = np.cumsum([config.members, config.members, config.test, config.attacker])
        parts = np.split(order, cuts)
        gathered = np.concatenate([parts[0], parts[1], parts[4]])[: config.collected]
        members, non_members, test, attacker, reference = parts
        return cls((x / 16.0).astype(np.float32), y.astype(np.int64), members, non_members,
                   test, attacker, reference, gathered)

    def rows(self, index: npt.NDArray[np.int64]) -> Data:
        return self.x[index], self.y[index]


def make_model(hidden: int, seed: int = 0) -> Any:
    """The 64-``hidden``-10 MLP with a square activation."""
    import torch

    import pets.nn

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), pets.nn.Square(),
                               torch.nn.Linear(hidden, 10))


def train_plain(x: npt.NDArray[Any], y: npt.NDArray[Any], *, config: AssessConfig,
                seed: int = 0) -> Any:
    """No protection: Adam, minibatches of 32, ``plain_epochs`` epochs."""
    import torch

    model = make_model(config.hidden, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    features = torch.as_tensor(x, dtype=torch.float32)
    labels = torch.as_tensor(y, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.plain_epochs):
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(32):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(features[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


@dataclass(frozen=True)
class Trained:
    """A DP-SGD model (hooks removed), its noise multiplier and the epsilon it spent."""

    model: Any
    noise_multiplier: float
    epsilon: float


def train_dp(x: npt.NDArray[Any], y: npt.NDArray[Any], *, epsilon: float,
             config: AssessConfig, seed: int = 0) -> Trained:
    """DP-SGD (Opacus via ``pets.dp.make_private``) to ``(epsilon, delta)`` in ``dp_epochs``."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import pets.dp

    module = make_model(config.hidden, seed)
    loader = DataLoader(TensorDataset(torch.as_tensor(x, dtype=torch.float32),
                                      torch.as_tensor(y, dtype=torch.long)),
                        batch_size=config.dp_batch)
    with warnings.catch_warnings():  # the insecure-RNG warning is stated once in the report
        warnings.simplefilter("ignore")
        training = pets.dp.make_private(
            module=module, optimizer=torch.optim.SGD(module.parameters(), lr=config.dp_lr),
            data_loader=loader, target_epsilon=epsilon, target_delta=config.delta,
            epochs=config.dp_epochs, max_grad_norm=config.clip_norm,
            accountant=config.dp_accountant,
        )
        for _ in range(config.dp_epochs):
            training.module.train()
            for features, labels in training.data_loader:
                if len(labels) == 0:  # Poisson sampling may draw an empty batch
                    continue
                training.optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(training.module(features), labels)
                loss.backward()  # type: ignore[no-untyped-call]
                training.optimizer.step()
        spent = float(training.epsilon())
    plain = make_model(config.hidden, seed)  # the attacks get a module without Opacus' hooks
    plain.load_state_dict({k.removeprefix("_module."): v
                           for k, v in training.module.state_dict().items()})
    return Trained(plain.eval(), float(training.noise_multiplier), spent)


def accuracy(model: Any, data: Data) -> float:
    """Test accuracy of a torch classifier."""
    import torch

    with torch.no_grad():
        logits = model(torch.as_tensor(data[0], dtype=torch.float32)).numpy()
    return float((logits.argmax(axis=1) == data[1]).mean())


def evaluator(data: Data) -> Any:
    """The attacker's own classifier: a logistic regression on its rows."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000).fit(*data)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed[0]`` holds the seconds afterwards."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start
