"""Audit two twins with membership inference: an overfit model, and the same model under DP-SGD.

Both are the same MLP trained on the same 300 digits. The non-private one is
trained long with no regularisation, so it memorises; the private one goes
through DP-SGD at epsilon=2. ``pets.dp.audit`` runs a loss-threshold attack and
an offline LiRA attack (shadow models on reference data the models never saw)
and turns their success into a lower bound on epsilon at 95% confidence.

    python examples/dp_audit.py            # ~15 s on 2 cores
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, TensorDataset

import pets.dp

torch.set_num_threads(1)  # tiny models: one thread is fastest, and fair on a shared machine

DELTA = 1e-5


@dataclass
class Split:
    members: tuple[np.ndarray, np.ndarray]
    non_members: tuple[np.ndarray, np.ndarray]
    reference: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def split_digits(n: int = 300, seed: int = 0) -> Split:
    """Disjoint members / non-members / reference population / test set from digits."""
    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    parts = np.split(order, [n, 2 * n, len(x) - 200])
    return Split(*[(x[p], y[p]) for p in parts])


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def train_overfit(
    x: np.ndarray, y: np.ndarray, epochs: int = 300, seed: int = 0
) -> torch.nn.Module:
    """Full-batch Adam, no regularisation: memorises the training set."""
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    features, labels = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    return model


def train_private(
    x: np.ndarray, y: np.ndarray, *, epsilon: float, epochs: int = 15, seed: int = 0
) -> tuple[torch.nn.Module, float]:
    """DP-SGD twin; returns the model and its accounted epsilon."""
    torch.manual_seed(seed)
    model = make_model()
    loader = DataLoader(
        TensorDataset(torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)), batch_size=32
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        training = pets.dp.make_private(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=DELTA,
            epochs=epochs,
            max_grad_norm=1.0,
        )
        for _ in range(epochs):
            for features, labels in training.data_loader:
                if len(labels):
                    training.optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(training.module(features), labels).backward()
                    training.optimizer.step()
    return training.module, training.epsilon()


def accuracy(model: torch.nn.Module, data: tuple[np.ndarray, np.ndarray]) -> float:
    with torch.no_grad():
        return float((model(torch.as_tensor(data[0])).argmax(1).numpy() == data[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epsilon", type=float, default=2.0, help="target epsilon of the DP twin")
    parser.add_argument("--shadows", type=int, default=4, help="shadow models for LiRA")
    args = parser.parse_args()

    split = split_digits()
    overfit = train_overfit(*split.members)
    private, accounted = train_private(*split.members, epsilon=args.epsilon)
    common = {
        "members": split.members,
        "non_members": split.non_members,
        "attacks": ("loss", "lira"),
        "reference": split.reference,
        "num_shadows": args.shadows,
    }
    overfit_report = pets.dp.audit(overfit, train_fn=train_overfit, **common)
    private_report = pets.dp.audit(
        private,
        train_fn=lambda x, y: train_private(x, y, epsilon=args.epsilon)[0],
        delta=DELTA,
        **common,
    )
    print(f"== non-private, overfit (test accuracy {accuracy(overfit, split.test):.3f}) ==")
    print(overfit_report)
    print()
    print(
        f"== DP-SGD twin, accounted epsilon={accounted:.2f} at delta={DELTA:g} "
        f"(test accuracy {accuracy(private, split.test):.3f}) =="
    )
    print(private_report)
    verdict = (
        "consistent with" if private_report.epsilon_lower_bound <= accounted else "CONTRADICTS"
    )
    print(
        f"\nempirical lower bound {private_report.epsilon_lower_bound:.3f} {verdict} the "
        f"accounted epsilon {accounted:.2f}"
    )


if __name__ == "__main__":
    main()
