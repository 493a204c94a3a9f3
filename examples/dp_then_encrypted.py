"""Train privately, then serve encrypted: DP-SGD followed by CKKS inference of the same model.

The training data is protected by DP-SGD (``pets.dp.make_private``: Opacus,
per-example clipping and noise); the users' queries by CKKS (``pets.compile``
on what ``make_private`` returned). The model owner compiles once and saves the
compiled model (``model.save``); the server loads it (``pets.load_model``) with
the client's public keys only, and answers encrypted queries.

The recipe both sides accept: standardise the inputs with the training
statistics (no normalisation layer: DP-SGD refuses BatchNorm, whose statistics
mix examples, and HE refuses GroupNorm/LayerNorm, which divide by statistics of
the encrypted input), and use ``pets.nn.Square`` activations (exact under HE,
no approximation).

    python examples/dp_then_encrypted.py            # ~1 minute on 2 cores
    python examples/dp_then_encrypted.py --quick    # fewer epochs and queries
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pets

torch.set_num_threads(1)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits, standardised with the training set's statistics (the normalisation recipe)."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def train_privately(x: np.ndarray, y: np.ndarray, *, epsilon: float, epochs: int) -> Any:
    """DP-SGD; returns what ``pets.dp.make_private`` returned, trained."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), pets.nn.Square(), nn.Linear(32, 10))
    loader = DataLoader(TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y)),
                        batch_size=64)
    warnings.filterwarnings("ignore", category=pets.dp.InsecureRNGWarning)  # printed below
    training = pets.dp.make_private(
        module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9),
        data_loader=loader, target_epsilon=epsilon, target_delta=1e-5, epochs=epochs,
        max_grad_norm=1.0)
    for _ in range(epochs):
        for inputs, labels in training.data_loader:
            if len(labels) == 0:
                continue
            training.optimizer.zero_grad()
            nn.functional.cross_entropy(training.module(inputs), labels).backward()
            training.optimizer.step()
    print(f"trained with DP-SGD: epsilon {training.epsilon():.2f} (target {epsilon}), "
          f"delta 1e-5, noise multiplier {training.noise_multiplier:.2f} (noise from torch's "
          "generator, not a cryptographic one: see docs/dp.md)")
    return training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and queries")
    parser.add_argument("--epsilon", type=float, default=4.0)
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_data()
    training = train_privately(x_train, y_train, epsilon=args.epsilon,
                               epochs=3 if args.quick else 15)
    net = training.module
    with torch.no_grad():
        plain = net(torch.tensor(x_test, dtype=torch.float32)).numpy()
    print(f"plaintext accuracy of the DP model: {np.mean(plain.argmax(1) == y_test):.3f}")

    # the model owner compiles what make_private returned, and saves it for the server
    client = pets.backend("ckks")
    model = pets.compile(training, backend=client, example_input=x_train)
    folder = Path(tempfile.mkdtemp(prefix="pets-"))
    model.save(folder / "digits.pets")

    # the server: public keys and the saved model, never the secret key or a recompile
    server = pets.load_backend(client.public().to_bytes())
    served = pets.load_model(folder / "digits.pets", backend=server)

    queries = x_test[: 16 if args.quick else 200]
    request = model.encrypt(queries).to_bytes()                        # client
    response = served(server.load_tensor(request)).to_bytes()          # server
    logits = model.decrypt(client.load_tensor(response))               # client
    agree = float(np.mean(logits.argmax(1) == plain[: len(queries)].argmax(1)))
    print(f"{len(queries)} encrypted queries ({model.encrypt(queries).layout} packing): "
          f"accuracy {np.mean(logits.argmax(1) == y_test[: len(queries)]):.3f}; "
          f"predictions agree with plaintext on {agree:.1%}")
    return 0 if agree == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
