"""HE (CKKS): the client keeps the secret key; the server holds public keys and ciphertexts.

The run is the encrypted-inference service's exchange, in one process: the client
compiles the model for ``pets.backend("ckks")``, sends ``backend.public()`` bytes and
its encrypted queries; the server (``pets.load_backend`` of those bytes, as
``pets serve`` does) evaluates on ciphertexts; the client decrypts. What the server
held is recorded as the evidence of the ``impossible`` cells: the bytes it received,
``has_secret_key``, the error its own ``decrypt`` raised when tried, and the checks of
:func:`~pets_benchmarks.assess.evidence.ciphertext_check` on the ciphertexts it loaded
(their coefficients against uniform, and an attacker's classifier reading them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets_benchmarks.assess.cells import Cost
from pets_benchmarks.assess.evidence import Verdict, ciphertext_check
from pets_benchmarks.assess.workload import Data, stopwatch

__all__ = ["HERun", "run_he"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HERun:
    """What the HE run measured: costs, the server's view, and why HE cannot train."""

    inference: Cost
    collection: Cost
    server_view: dict[str, Any]
    collection_view: dict[str, Any]
    training_refusal: str
    max_difference: float
    #: this run's checks of the server's view of the queries and of the records
    server_check: Verdict
    collection_check: Verdict
    parameters: dict[str, Any] = field(default_factory=dict)


def _refusal(action: Any) -> str:
    """Run ``action``, which must raise a pets error; return ``Name: message``."""
    import pets

    try:
        action()
    except pets.PetsError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error: the server could decrypt (this would be a broken deployment)"


def run_he(model: Any, calibration: Any, queries: Data, records: Any,
           record_labels: Any = None, classifier: Any = None) -> HERun:
    """Encrypted inference of ``queries`` with ``model``; ``records`` encrypted for collection;
    ``classifier`` is the attacker's, tried on what the server holds."""
    import torch

    import pets

    x, y = queries
    with torch.no_grad():
        reference = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    with stopwatch() as plain_time, torch.no_grad():
        model(torch.as_tensor(x, dtype=torch.float32))
    logger.info("HE: compiling the model and making keys")
    client = pets.backend("ckks")
    with stopwatch() as setup:
        compiled = pets.compile(model, backend=client, example_input=calibration)
        public = client.public().to_bytes()
    server = pets.load_backend(public)                    # what the server holds: no secret key
    served = compiled.for_backend(server)
    logger.info("HE: %d encrypted queries", len(x))
    with pets.measure("HE inference") as cost:
        request = compiled.encrypt(x).to_bytes()          # client
        at_server = server.load_tensor(request)           # server: ciphertexts only
        response = served(at_server).to_bytes()
        outputs = compiled.decrypt(client.load_tensor(response))   # client
    difference = float(np.max(np.abs(outputs - reference)))
    agreement = float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    refused = _refusal(lambda: server.decrypt(at_server))
    server_check = ciphertext_check(server, at_server, refusal=refused, labels=y,
                                    classifier=classifier)
    view = {
        "held by the server": "the public key set and the ciphertexts of the queries",
        "public key set bytes": len(public),
        "ciphertext bytes received": len(request),
        "result ciphertext bytes sent back": len(response),
        "server has_secret_key": server.has_secret_key,
        "server decrypt attempt": refused,
        "security_bits": client.describe().get("security_bits"),
        "poly_modulus_degree": client.describe().get("poly_modulus_degree"),
    }
    inference = Cost(
        work=f"classify {len(x)} test digits (batched packing; keys made once)",
        seconds=cost.seconds, plain_seconds=plain_time[0],
        bytes=float(len(request) + len(response)), plain_bytes=float(x.nbytes + reference.nbytes),
        accuracy=float((outputs.argmax(axis=1) == y).mean()),
        plain_accuracy=float((reference.argmax(axis=1) == y).mean()),
        details={"key setup seconds (compile + keys)": setup[0],
                 "public key set bytes (once per client)": len(public),
                 "predictions equal to plaintext": agreement,
                 "largest logit difference": difference},
    )
    logger.info("HE: encrypting %d collected records", len(records))
    with stopwatch() as encrypting:
        stored = client.encrypt(np.asarray(records, dtype=np.float64), layout="batched").to_bytes()
    collection = Cost(
        work=f"collect {len(records)} records (encrypted under their owner's key)",
        seconds=encrypting[0], plain_seconds=None, bytes=float(len(stored)),
        plain_bytes=float(np.asarray(records, dtype=np.float64).nbytes),
        details={"usable for": "encrypted inference only: CKKS cannot train (see training)"},
    )
    held = server.load_tensor(stored)
    refused = _refusal(lambda: server.decrypt(held))
    collection_check = ciphertext_check(server, held, refusal=refused, labels=record_labels,
                                        classifier=classifier)
    stored_view = {
        "held by the server": "the public key set and the ciphertexts of the records",
        "public key set bytes": len(public),
        "ciphertext bytes of the records": len(stored),
        "server has_secret_key": server.has_secret_key,
        "server decrypt attempt": refused,
        "security_bits": view["security_bits"],
        "poly_modulus_degree": view["poly_modulus_degree"],
    }
    refusal = _refusal(lambda: compiled.fit(at_server, at_server))
    parameters = {k: v for k, v in client.describe().items() if k not in ("why",)}
    return HERun(inference, collection, view, stored_view, refusal, difference, server_check,
                 collection_check, parameters)
