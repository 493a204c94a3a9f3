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

import torch
from pets_benchmarks.audit import run_audit

torch.set_num_threads(1)  # tiny models: one thread is fastest, and fair on a shared machine


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epsilon", type=float, default=2.0, help="target epsilon of the DP twin")
    parser.add_argument("--shadows", type=int, default=4, help="shadow models for LiRA")
    args = parser.parse_args()
    print(run_audit(epsilon=args.epsilon, shadows=args.shadows, progress=print))


if __name__ == "__main__":
    main()
