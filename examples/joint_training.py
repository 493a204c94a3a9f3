"""Three organisations train one model on their pooled rows without showing them to each other.

Each party is its own process holding a third of scikit-learn's breast-cancer
rows; a dealer process makes the Beaver triples. Data, labels and weights stay
secret-shared during training; then party 0 queries the shared model, and
only party 0 learns the answers. The same model trained in the clear on the
pooled rows is the reference: the accuracies should agree within 2 points.

Run: python examples/joint_training.py [--parties N]
"""

from __future__ import annotations

import argparse

from pets_protocols.joint_training import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3, help="party processes (>= 2)")
    args = parser.parse_args()
    result = run(parties=args.parties)
    print(result)
    gap = abs(result.mpc_accuracy - result.pooled_accuracy)
    print(f"within 2 points of pooled plaintext training: {'yes' if gap <= 0.02 else 'NO'}")


if __name__ == "__main__":
    main()
