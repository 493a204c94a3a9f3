"""Encrypted inference: a digits classifier runs on CKKS ciphertexts.

Trains a 64-32-10 MLP with an HE-friendly square activation on scikit-learn's
digits, compiles it with ``pets.compile`` for the CKKS backend, then encrypts
the test set, infers on ciphertexts and decrypts - in both packings:
``batched`` (the whole test set in a few ciphertexts: throughput) and
``per_sample`` (one ciphertext per sample: latency). Prints plaintext against
encrypted accuracy and the time each took.

    python examples/encrypted_inference.py            # the whole test set
    python examples/encrypted_inference.py --quick    # fewer samples, shorter training
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import pets


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits 8x8 scaled to [0, 1] by /16, then centred on the training mean."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    mean = x_train.mean(axis=0)
    return x_train - mean, x_test - mean, y_train, y_test


def train(x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    """A 64-32-10 MLP with pets.nn.Square, trained full-batch with Adam."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), pets.nn.Square(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    inputs, targets = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None,
                        help="test samples to encrypt in the batched run (default: all)")
    parser.add_argument("--per-sample", type=int, default=4,
                        help="samples to run one ciphertext each (default: 4)")
    parser.add_argument("--quick", action="store_true", help="short training, 64 samples")
    args = parser.parse_args(argv)

    x_train, x_test, y_train, y_test = load_data()
    samples = args.samples or (64 if args.quick else len(x_test))
    x_test, y_test = x_test[:samples], y_test[:samples]
    with pets.measure("training") as cost:
        model = train(x_train, y_train, epochs=150 if args.quick else 300)
    with torch.no_grad():
        plain_logits = model(torch.tensor(x_test, dtype=torch.float32)).numpy()
    plain_accuracy = float((plain_logits.argmax(1) == y_test).mean())
    print(f"{cost}\nplaintext accuracy on {samples} test samples: {plain_accuracy:.3f}")

    try:
        backend = pets.backend("ckks")
    except pets.BackendError as exc:
        print(f"CKKS backend unavailable ({exc}); install it with: pip install 'pets[he]'")
        return 1
    with pets.measure("compile + keys") as cost:
        private = pets.compile(model, backend=backend, example_input=x_train,
                               max_rows=len(x_test))
        backend.keys  # noqa: B018  (make the keys now, so inference timings exclude them)
    print(cost)
    print(private)
    print(f"CKKS parameters: {backend.describe()}")

    runs = [("batched", x_test, y_test, plain_logits),
            ("per_sample", x_test[: args.per_sample], y_test[: args.per_sample],
             plain_logits[: args.per_sample])]
    for layout, x, y, reference in runs:
        with pets.measure(f"{layout}: encrypt") as encrypt_cost:
            tensor = private.encrypt(x, layout=layout)
        ciphertext_bytes = len(tensor.to_bytes())
        with pets.measure(f"{layout}: infer on ciphertexts") as infer_cost:
            output = private(tensor)
        with pets.measure(f"{layout}: decrypt") as decrypt_cost:
            logits = private.decrypt(output)
        accuracy = float((logits.argmax(1) == y).mean())
        agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
        print(f"\n== {layout}: {len(x)} samples ==")
        for cost in (encrypt_cost, infer_cost, decrypt_cost):
            print(f"  {cost}")
        print(f"  per sample: {infer_cost.seconds / len(x) * 1e3:.1f} ms inference")
        print(f"  encrypted input: {ciphertext_bytes / 2**20:.2f} MiB")
        print(f"  accuracy: encrypted {accuracy:.3f} vs plaintext "
              f"{float((reference.argmax(1) == y).mean()):.3f}; predictions agree on "
              f"{agreement:.1%}; max |logit difference| {np.abs(logits - reference).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
