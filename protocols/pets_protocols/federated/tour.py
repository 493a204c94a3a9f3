"""The tour's federated section: three clients, a few rounds, one dropout, on Flower.

``pets demo`` prints what :func:`run` returns: each round's participants,
accuracy, epsilon spent and bytes, for DP with encrypted aggregation beside
Flower's plain FedAvg on the same clients.
"""

from __future__ import annotations

from collections.abc import Callable

from pets_protocols.federated import packing
from pets_protocols.federated.simulation import default_privacy, simulate

__all__ = ["run"]


def run(*, clients: int = 3, rounds: int = 3, epsilon: float = 8.0,
        say: Callable[[str], None] = print) -> str:
    """Train on Flower's simulation engine; the last client drops out of the last round."""
    keys = packing.make_keys()
    privacy = default_privacy(clients, rounds, epsilon)
    say(f"key authority: one CKKS key set for the {clients} clients; the server gets only the "
        f"public part. Each client: clip {privacy.clip_norm:g}, noise share for "
        f"(epsilon {epsilon:g}, delta {privacy.delta:g}) over {rounds} rounds; client "
        f"{clients - 1} will drop out of round {rounds}")
    runs = simulate(modes=("fedavg", "dp+he"), clients=clients, rounds=rounds,
                    privacy=privacy, keys=keys, fail_at={clients - 1: rounds})
    plain, secure = runs["fedavg", "iid"], runs["dp+he", "iid"]
    lines = []
    for report, accuracy, reference in zip(secure.reports, secure.accuracy, plain.accuracy,
                                           strict=True):
        dropped = f" ({'; '.join(report.dropped)})" if report.dropped else ""
        lines.append(
            f"  round {report.number}: {report.clients} of {clients} clients{dropped}; "
            f"accuracy {accuracy:.3f} (plain FedAvg {reference:.3f}); epsilon spent "
            f"{report.epsilon or 0:.2f} of {epsilon:g}; {report.bytes_up:,.0f} bytes up per "
            f"client ({plain.bytes_up:,.0f} in the clear)"
        )
    lines.append(
        "  the server summed ciphertexts it cannot read (one per update, "
        f"{1000 * (secure.aggregate_seconds or 0):.1f} ms a round); the clients decrypted "
        "the average. With 3 clients, client-level DP at this epsilon costs most of the "
        "accuracy: see docs/federated.md"
    )
    return "\n".join(lines)
