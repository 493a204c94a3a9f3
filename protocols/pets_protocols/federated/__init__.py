"""Federated training with DP and encrypted aggregation, on Flower.

Parties and keys: a key authority (or client 0) makes one CKKS key set at
enrolment and gives it to every client out of band; the aggregator (Flower's
ServerApp with :class:`SecureFedAvg`) gets only the public part. Each round
each client trains on its own shard, clips its update, adds its share of the
DP noise, pays for the round in its own :class:`pets.dp.Budget` and encrypts
its proposal (:class:`SecureUpdateMod`, a Flower client mod); the aggregator
sums ciphertexts; the clients decrypt the average. ``docs/federated.md`` states
what each party sees and what breaks it.

* :func:`simulate` — every mode on Flower's simulation engine, in one call;
* :func:`compare` / :func:`run_federated` — the bench rows: FedAvg, DP, DP + encrypted
  aggregation, pooled; :func:`pets_protocols.federated.tour.run` — the tour's section;
* :mod:`.deployment` — the same on Flower's deployment engine (SuperLink, SuperNodes).
"""

from pets_protocols.federated.compare import FederatedReport, compare, format_rows, run_federated
from pets_protocols.federated.mod import SecureUpdateMod, open_global, traffic_mod
from pets_protocols.federated.packing import decrypt_vector, encrypt_vector, make_keys, sum_tensors
from pets_protocols.federated.privacy import DPSettings, epsilon_per_round_for
from pets_protocols.federated.simulation import MODES, FederatedRun, simulate
from pets_protocols.federated.strategy import RoundReport, SecureFedAvg

__all__ = [
    "MODES",
    "DPSettings",
    "FederatedReport",
    "FederatedRun",
    "RoundReport",
    "SecureFedAvg",
    "SecureUpdateMod",
    "compare",
    "decrypt_vector",
    "encrypt_vector",
    "epsilon_per_round_for",
    "format_rows",
    "make_keys",
    "open_global",
    "run_federated",
    "simulate",
    "sum_tensors",
    "traffic_mod",
]
