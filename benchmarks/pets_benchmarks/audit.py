"""Membership-inference audit of twins: an overfit model and the same model under DP-SGD.

Both twins are the same MLP trained on the same digits. The non-private one
trains long with no regularisation, so it memorises; the private one goes
through DP-SGD. :func:`run_audit` audits both with ``pets.dp.audit`` and checks
the DP twin's empirical lower bound against its accounted epsilon.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AuditComparison", "Split", "run_audit", "split_digits", "train_overfit",
           "train_private"]

DELTA = 1e-5
Data = tuple[np.ndarray, np.ndarray]


@dataclass
class Split:
    members: Data
    non_members: Data
    reference: Data
    test: Data


def split_digits(n: int = 300, seed: int = 0, test: int = 200) -> Split:
    """Disjoint members / non-members (``n`` each) / reference population / test set."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    parts = np.split(order, [n, 2 * n, len(x) - test])
    return Split(*[(x[p], y[p]) for p in parts])


def make_model(seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )


def train_overfit(x: np.ndarray, y: np.ndarray, epochs: int = 300, seed: int = 0) -> Any:
    """Full-batch Adam, no regularisation: memorises the training set."""
    import torch

    model = make_model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    features, labels = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return model


def train_private(x: np.ndarray, y: np.ndarray, *, epsilon: float, epochs: int = 15,
                  batch_size: int = 32, seed: int = 0, accountant: str = "prv"
                  ) -> tuple[Any, float]:
    """The DP-SGD twin; returns the model and its accounted epsilon at ``DELTA``."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import pets.dp
    from pets_benchmarks.dp import run_epoch

    model = make_model(seed)
    loader = DataLoader(
        TensorDataset(torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)),
        batch_size=batch_size,
    )
    with warnings.catch_warnings():  # announced once by the report; the rest still shows
        warnings.simplefilter("ignore", pets.dp.InsecureRNGWarning)
        training = pets.dp.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            data_loader=loader, target_epsilon=epsilon, target_delta=DELTA, epochs=epochs,
            max_grad_norm=1.0, accountant=accountant,
        )
        for _ in range(epochs):
            run_epoch(training.module, training.optimizer, training.data_loader)
    return training.module, training.epsilon()


def held_out_accuracy(model: Any, data: Data) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.as_tensor(data[0])).argmax(1).numpy() == data[1]).mean())


@dataclass
class AuditComparison:
    overfit: Any  # pets.dp.AuditReport
    private: Any
    accounted_epsilon: float
    overfit_accuracy: float
    private_accuracy: float

    @property
    def consistent(self) -> bool:
        """Whether the DP twin's empirical lower bound stays within its accounted epsilon."""
        return bool(self.private.epsilon_lower_bound <= self.accounted_epsilon)

    def __str__(self) -> str:
        verdict = "consistent with" if self.consistent else "CONTRADICTS"
        return "\n".join([
            f"== non-private, overfit (test accuracy {self.overfit_accuracy:.3f}) ==",
            str(self.overfit), "",
            f"== DP-SGD twin, accounted epsilon={self.accounted_epsilon:.2f} at delta={DELTA:g} "
            f"(test accuracy {self.private_accuracy:.3f}) ==",
            str(self.private), "",
            f"empirical lower bound {self.private.epsilon_lower_bound:.3f} {verdict} the "
            f"accounted epsilon {self.accounted_epsilon:.2f}",
        ])


def run_audit(*, epsilon: float = 2.0, shadows: int = 4, members: int = 300,
              progress: Callable[[str], None] | None = None) -> AuditComparison:
    """Train both twins on the same members, audit both (loss and LiRA attacks)."""
    import pets.dp

    say = progress or (lambda _msg: None)
    split = split_digits(members)
    say(f"training the overfit twin and the DP-SGD twin (epsilon={epsilon:g}) on {members} digits")
    overfit = train_overfit(*split.members)
    private, accounted = train_private(*split.members, epsilon=epsilon)
    common: dict[str, Any] = {
        "members": split.members, "non_members": split.non_members,
        "attacks": ("loss", "lira"), "reference": split.reference, "num_shadows": shadows,
    }
    say(f"auditing both with loss-threshold and LiRA attacks ({shadows} shadow models each)")
    overfit_report = pets.dp.audit(overfit, train_fn=train_overfit, **common)
    private_report = pets.dp.audit(
        private, train_fn=lambda x, y: train_private(x, y, epsilon=epsilon)[0], delta=DELTA,
        **common,
    )
    return AuditComparison(overfit_report, private_report, accounted,
                           held_out_accuracy(overfit, split.test),
                           held_out_accuracy(private, split.test))
