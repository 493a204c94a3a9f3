"""The tour's federated section: ``federated.train`` with sample-level DP and SecAgg+, beside
Flower's plain FedAvg on the same clients."""

from __future__ import annotations

from pets_tour.common import Say, heading

CLIENTS, EPSILON = 5, 4.0


def federated(quick: bool, say: Say) -> None:
    import numpy as np
    import torch
    from pets_protocols import federated as fl
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    heading("4. Federated learning (Flower): clients keep their data, train with DP-SGD, and "
            "mask their updates so the server sees only the sum")
    digits = load_digits()
    x = (digits.data / 8.0 - 1.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25,
                                                        random_state=0, stratify=digits.target)
    clients = fl.label_skew(x_train, y_train, CLIENTS)
    rounds = 3 if quick else 5

    def mlp() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                   torch.nn.Linear(32, 10))

    say(f"{CLIENTS} clients, each holding about two digits' records, on Flower's simulation "
        f"engine; {rounds} rounds. First Flower's FedAvg in the clear, then each client "
        f"running DP-SGD (Opacus, epsilon {EPSILON:g} per client over all rounds, paid into its "
        "own budget file) and SecAgg+ (pairwise masks: the server unmasks only the sum); "
        f"client {CLIENTS - 1} drops out of round 2 after the key exchange")
    plain = fl.train(mlp(), clients, rounds=rounds, local_epochs=2, evaluate=(x_test, y_test))
    secure = fl.train(mlp(), clients, rounds=rounds, local_epochs=2, lr=0.5, batch_size=64,
                      dp=fl.SampleDP(epsilon=EPSILON), aggregation="secagg+",
                      drops={2: [CLIENTS - 1]}, evaluate=(x_test, y_test))
    for ours, theirs in zip(secure.history, plain.history, strict=True):
        dropped = f" ({'; '.join(ours.dropouts)})" if ours.dropouts else ""
        print(f"  round {ours.number}: {ours.clients} of {CLIENTS} clients{dropped}; accuracy "
              f"{ours.accuracy or 0:.3f} (FedAvg {theirs.accuracy or 0:.3f}); epsilon spent "
              f"{ours.epsilon or 0:.2f} of {EPSILON:g}; {ours.bytes_up + ours.bytes_down:,.0f} "
              f"bytes per client ({theirs.bytes_up + theirs.bytes_down:,.0f} in the clear)",
              flush=True)
    spent = secure.epsilon if isinstance(secure.epsilon, dict) else {}
    say(f"each client's budget file holds its spend ({max(spent.values(), default=0):.2f} at "
        f"most of {EPSILON:g}); a restarted client reads it and refuses a round it cannot pay. "
        "The server saw masked vectors and their sum; it would need two thirds of a client's "
        "neighbours to unmask that client (docs/federated.md)")
