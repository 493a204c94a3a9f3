"""Federated training with DP noise and CKKS-encrypted aggregation, on Flower (digits, no download).

Three clients train the digits MLP on their own shards. Each clips its update,
adds its share of the DP noise (paid for in its own privacy budget) and
encrypts it; the server sums ciphertexts it cannot read; the clients decrypt
the average. Prints the comparison, from one run, with
Flower's plain FedAvg, DP without encryption and pooled training.

    python examples/federated_training.py --quick          # simulation engine, ~20 s
    python examples/federated_training.py                  # 5 rounds
    python examples/federated_training.py --deployment     # SuperLink + SuperNodes, ~1-2 min
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from pets_protocols.federated import compare, format_rows
from pets_protocols.federated.deployment import LocalFederation


def on_deployment_engine(clients: int, rounds: int, epsilon: float) -> None:
    """Every party a real process on localhost: flower-superlink, flower-supernode x N, flwr run."""
    with tempfile.TemporaryDirectory() as workdir, LocalFederation(
        workdir, clients=clients, rounds=rounds, epsilon=epsilon
    ) as federation:
        result = federation.run()
    print(f"deployment engine: {clients} SuperNodes, {rounds} rounds, epsilon {epsilon:g}")
    for report, accuracy in zip(result["reports"], result["accuracy"], strict=True):
        print(f"  round {report['number']}: {report['clients']} clients, "
              f"accuracy {accuracy:.3f}, epsilon spent {report['epsilon']:.2f}, "
              f"{report['bytes_up']:,.0f} bytes up per client")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=8.0,
                        help="each client's total budget over all rounds (delta 1e-5)")
    parser.add_argument("--deployment", action="store_true",
                        help="run on Flower's deployment engine (real processes) instead")
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    rounds = 2 if args.quick else 5

    started = time.perf_counter()
    if args.deployment:
        on_deployment_engine(args.clients, rounds, args.epsilon)
    else:
        rows = compare(clients=args.clients, rounds=rounds, epsilon=args.epsilon)
        print(f"\ndigits MLP 64-32-10, {args.clients} clients, {rounds} rounds, "
              f"2 local epochs, epsilon {args.epsilon:g} per client (delta 1e-5):")
        print(format_rows(rows))
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
