"""Federated learning on Flower: the user's torch model, DP that keeps accuracy, and
aggregation that no single party can open.

* :func:`train` — one call: a torch model, a list of ``(x, y)`` clients, the rounds, the
  DP (:class:`SampleDP`: DP-SGD inside each client through Opacus; :class:`ClientDP`:
  clipped, noised updates) and the aggregation (``"plain"``, ``"secagg+"``, ``"ckks"``);
  returns a :class:`TrainResult` (the model, a :class:`RoundRecord` per round, epsilon).
  :func:`iid` and :func:`label_skew` split a dataset across clients.
* :class:`SecureUpdateMod` / :class:`SecureFedAvg` — the CKKS mode's Flower client mod and
  strategy, usable in any Flower app; :func:`simulate` / :func:`compare` — the digits
  demo's runs and the bench rows; :mod:`.deployment` — the same on Flower's deployment
  engine (SuperLink, SuperNodes).

``docs/federated.md`` states what each party sees, who must not collude with whom, and
what was measured.
"""

from pets_protocols.federated.api import AGGREGATIONS, TrainResult, iid, label_skew, train
from pets_protocols.federated.compare import FederatedReport, compare, format_rows, run_federated
from pets_protocols.federated.meter import RoundRecord
from pets_protocols.federated.mod import SecureUpdateMod, open_global, traffic_mod
from pets_protocols.federated.options import ClientDP, SampleDP
from pets_protocols.federated.packing import decrypt_vector, encrypt_vector, make_keys, sum_tensors
from pets_protocols.federated.privacy import DPSettings, epsilon_per_round_for
from pets_protocols.federated.simulation import MODES, FederatedRun, simulate
from pets_protocols.federated.strategy import RoundReport, SecureFedAvg

__all__ = [
    "AGGREGATIONS",
    "MODES",
    "ClientDP",
    "DPSettings",
    "FederatedReport",
    "FederatedRun",
    "RoundRecord",
    "RoundReport",
    "SampleDP",
    "SecureFedAvg",
    "SecureUpdateMod",
    "TrainResult",
    "compare",
    "decrypt_vector",
    "encrypt_vector",
    "epsilon_per_round_for",
    "format_rows",
    "iid",
    "label_skew",
    "make_keys",
    "open_global",
    "run_federated",
    "simulate",
    "sum_tensors",
    "traffic_mod",
    "train",
]
