"""DP-SGD: how accuracy falls as epsilon shrinks, on scikit-learn's digits (no download).

Trains the same small MLP without privacy and with DP-SGD at several epsilons
(``pets.dp.make_private``, Opacus underneath), prints accuracy against epsilon
and saves a plot.

    python examples/dp_training.py                 # ~1 minute on 2 cores
    python examples/dp_training.py --quick         # a few seconds, fewer epsilons
    python examples/dp_training.py --out out/dp_accuracy.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from pets_benchmarks.dp import DELTA, accuracy, digits_datasets, train

torch.set_num_threads(1)  # tiny models: one thread is fastest, and fair on a shared machine


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="out/dp_accuracy.png", help="where to save the plot")
    parser.add_argument("--quick", action="store_true", help="fewer epsilons and epochs")
    args = parser.parse_args()

    epsilons = [1.0, 8.0] if args.quick else [0.5, 1.0, 2.0, 4.0, 8.0]
    epochs = 3 if args.quick else 15
    train_set, test_set = digits_datasets()

    start = time.perf_counter()
    baseline = accuracy(train(train_set, epochs=epochs, epsilon=None), test_set)
    results = []
    for epsilon in epsilons:
        results.append(
            (epsilon, accuracy(train(train_set, epochs=epochs, epsilon=epsilon), test_set))
        )

    print(
        f"digits, MLP 64-64-10, {epochs} epochs, delta={DELTA:g}, "
        f"{len(train_set)} training examples"
    )
    print(f"{'epsilon':>9}  {'test accuracy':>13}")
    for epsilon, acc in results:
        print(f"{epsilon:>9g}  {acc:>13.3f}")
    print(f"{'no DP':>9}  {baseline:>13.3f}")
    print(f"({time.perf_counter() - start:.1f} s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([e for e, _ in results], [a for _, a in results], "o-", label="DP-SGD")
    axes.axhline(baseline, color="grey", linestyle="--", label="non-private")
    axes.set_xscale("log", base=2)
    axes.set_xlabel(f"epsilon (delta={DELTA:g})")
    axes.set_ylabel("test accuracy")
    axes.set_title("DP-SGD on digits: accuracy vs privacy")
    axes.legend()
    figure.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    print(f"plot saved to {out}")


if __name__ == "__main__":
    main()
