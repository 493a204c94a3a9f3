"""The tour's federated section: three Flower clients with DP noise and encrypted aggregation."""

from __future__ import annotations

from pets_tour.common import Say, heading


def federated(quick: bool, say: Say) -> None:
    from pets_protocols.federated.tour import run

    heading("4. Federated learning (Flower): clients keep their data, clip and noise their "
            "updates, and encrypt them for an aggregator that cannot read them")
    say("3 clients on Flower's simulation engine; the server sums CKKS ciphertexts; the "
        "clients decrypt the average; one client drops out of the last round (Flower logs "
        "that simulated dropout as an error with a traceback: it is expected)")
    print(run(clients=3, rounds=2 if quick else 3, say=say))
    say("the same with a looser budget (epsilon 50 per client), to show the noise's cost")
    print(run(clients=3, rounds=2 if quick else 3, epsilon=50.0, say=say))
