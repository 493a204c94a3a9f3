"""Three organisations train one model on their pooled rows without showing them to each other.

Each party is its own process holding a third of scikit-learn's breast-cancer
rows; a dealer process makes the Beaver triples. Data, labels and weights stay
secret-shared during training; then party 0 queries the shared model, and
only party 0 learns the answers. The same model trained in the clear on the
pooled rows is the reference: the accuracies should agree within 2 points.
``--optimizer adam`` trains with Adam; ``--dp-epsilon 4`` with DP-SGD on the
shares (the released weights are then (4, 1e-5)-DP; the reference is the
same DP-SGD in the clear, so both are noisy).

Run: python examples/joint_training.py [--parties N] [--optimizer adam] [--dp-epsilon E]
"""

from __future__ import annotations

import argparse

from pets_protocols.joint_training import SETTINGS, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3, help="party processes (>= 2)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--dp-epsilon", type=float, default=None,
                        help="train with DP-SGD under MPC at this epsilon (delta 1e-5)")
    args = parser.parse_args()
    settings = dict(SETTINGS)
    if args.optimizer == "adam":
        settings.update(optimizer="adam", lr=0.05)
    if args.dp_epsilon is not None:
        settings["dp_epsilon"] = args.dp_epsilon
    result = run(parties=args.parties, settings=settings)
    print(result)
    gap = abs(result.mpc_accuracy - result.pooled_accuracy)
    print(f"within 2 points of pooled plaintext training: {'yes' if gap <= 0.02 else 'NO'}")


if __name__ == "__main__":
    main()
