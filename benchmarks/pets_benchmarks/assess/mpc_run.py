"""MPC: two real party processes and a dealer (``pets.run_parties``), on secret shares.

One run does three pieces of work, each measured on its own:

* *collection*: each party secret-shares its half of the members' records (and labels);
* *training*: the parties train the MLP on the pooled shares (``PrivateModel.fit``;
  pets' MPC training takes ReLU, not the square, so the MPC model has ReLU) and
  party 0 queries it privately; the same SGD in the clear (same initial weights,
  same ``seed`` so the same batches in the same order) is the reference;
* *inference*: party 1 owns the assessed model (``weights_from=1``), party 0 its queries;
  only party 0 learns the predictions.

Party 1 returns the bytes of its share of party 0's records and of party 0's queries:
its whole view of them. :func:`share_view` measures what those bytes say about the data
(the evidence of the ``impossible`` cells): their correlation with the data, and how
often the attacker's classifier names the right digit from them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pets_benchmarks.assess.cells import Cost
from pets_benchmarks.assess.evidence import Verdict, share_check
from pets_benchmarks.assess.workload import stopwatch

__all__ = ["MPCRun", "party_program", "run_mpc", "share_view"]

logger = logging.getLogger(__name__)


def _relu_model(hidden: int) -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


def _cost(measurement: Any) -> dict[str, Any]:
    return {"seconds": measurement.seconds, "bytes": measurement.bytes_sent,
            "rounds": measurement.rounds, "offline": dict(measurement.extra)}


def party_program(party: Any, halves: list[Any], labels: list[Any], queries: Any,
                  served: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """What each party runs (module level: ``run_parties`` imports it in every process).

    ``halves[r]``/``labels[r]`` are party ``r``'s records (the other party ignores them),
    ``queries`` party 0's, ``served`` = (architecture, state dict) party 1's model.
    """
    import torch

    import pets
    from pets_benchmarks.assess.workload import make_model

    be, rank = party.backend, party.rank
    with pets.measure("share records") as sharing:
        xs = [be.encrypt(halves[r] if r == rank else None, src=r) for r in range(party.parties)]
        ys = [be.encrypt(np.eye(10)[labels[r]] if r == rank else None, src=r)
              for r in range(party.parties)]
    view_records = xs[0].to_bytes() if rank == 1 else None
    trainable = pets.compile(_relu_model(settings["hidden"]), backend=be,
                             example_input=torch.zeros(2, 64))
    fit = {k: v for k, v in settings.items() if k != "hidden"}
    with pets.measure("joint training") as training:
        trainable.fit(pets.concat(xs, axis=0), pets.concat(ys, axis=0), **fit)
    trained_query = trainable.encrypt(queries if rank == 0 else None, src=0)
    trained_out = trainable.decrypt(trainable(trained_query), to=0)
    hidden, state = served
    model = make_model(hidden)
    if rank == 1:
        model.load_state_dict(state)                       # only the owner's weights are real
    owned = pets.compile(model, backend=be, example_input=torch.zeros(2, 64), weights_from=1)
    with pets.measure("private inference") as inferring:
        query = owned.encrypt(queries if rank == 0 else None, src=0)
        outputs = owned.decrypt(owned(query), to=0)
    view_query = query.to_bytes() if rank == 1 else None
    return {"view_records": view_records, "view_query": view_query,
            "trained_outputs": trained_out, "outputs": outputs,
            "share": _cost(sharing), "train": _cost(training), "infer": _cost(inferring)}


def share_view(data: bytes, truth: npt.NDArray[Any], labels: npt.NDArray[Any],
               classifier: Any) -> Verdict:
    """This run's check of a party's share bytes of ``truth`` (:func:`share_check`): the
    share against uniform, its correlation with the data, digits named from it."""
    from pets.serialization import unpack

    envelope = unpack(data, kind="tensor")
    share = np.frombuffer(envelope.blobs[0], dtype="<i8").reshape(truth.shape)
    scale = float(envelope.meta.get("scale", 1))
    verdict = share_check(share, scale, truth, labels, classifier)
    held = {"held by the party": f"{len(data):,} bytes: its additive share of each value, an "
                                 "integer in the 64-bit ring; the shape"}
    return Verdict(verdict.impossible, {**held, **verdict.evidence}, verdict.leakage)


@dataclass(frozen=True)
class MPCRun:
    """Costs of the three pieces and party 1's view of party 0's records and queries."""

    collection: Cost
    training: Cost
    inference: Cost
    record_view: Verdict
    query_view: Verdict
    seconds_with_processes: float


def run_mpc(*, halves: list[Any], labels: list[Any], queries: Any, query_labels: Any,
            served: Any, hidden: int, settings: dict[str, Any], classifier: Any,
            timeout: float = 300.0) -> MPCRun:
    """Start the parties, run :func:`party_program`, and measure what it did."""
    import torch

    import pets

    logger.info("MPC: starting 2 party processes and a dealer")
    arguments = dict(settings, hidden=hidden)
    with stopwatch() as elapsed:
        results = pets.run_parties(party_program, parties=2, timeout=timeout,
                                   args=(halves, labels, queries, served, arguments))
    zero, one = results
    # the references: the same SGD in the clear, and the served model in the clear
    plain = pets.backend("plain")
    reference = pets.compile(_relu_model(hidden), backend=plain, example_input=np.zeros((2, 64)))
    x_all, y_all = np.concatenate(halves), np.concatenate(labels)
    with stopwatch() as plain_training:
        reference.fit(plain.encrypt(x_all), plain.encrypt(np.eye(10)[y_all]), **settings)
    plain_trained = float((reference.predict(queries).argmax(axis=1) == query_labels).mean())
    model = served_model(served)
    with stopwatch() as plain_inference, torch.no_grad():
        logits = model(torch.as_tensor(queries, dtype=torch.float32)).numpy()
    count = len(halves[0]) + len(halves[1])
    collection = Cost(
        work=f"pool {count} records of 2 parties as secret shares",
        seconds=zero["share"]["seconds"],
        bytes=float(zero["share"]["bytes"] + one["share"]["bytes"]),
        plain_bytes=float(x_all.nbytes + y_all.nbytes),
        details={"rounds (party 0)": zero["share"]["rounds"],
                 "why so few bytes": "each party's shares come from seeds the parties agreed "
                                     "at start-up (CrypTen's pseudo-random zero sharing): the "
                                     "owner adds its values to its own share, and only "
                                     "shapes travel"},
    )
    training = Cost(
        work=f"train the 64-{hidden}-10 ReLU MLP jointly on {count} records "
             f"({settings['epochs']} epoch(s) of SGD, batch {settings['batch_size']}, lr "
             f"{settings['lr']:g}; pets' MPC training takes ReLU, not the square)",
        seconds=zero["train"]["seconds"], plain_seconds=plain_training[0],
        bytes=float(zero["train"]["bytes"] + one["train"]["bytes"]),
        accuracy=_accuracy(zero["trained_outputs"], query_labels), plain_accuracy=plain_trained,
        details={"rounds (party 0)": zero["train"]["rounds"],
                 "offline (dealer) traffic, party 0": zero["train"]["offline"]},
    )
    inference = Cost(
        work=f"classify {len(queries)} test digits (weights secret at party 1)",
        seconds=zero["infer"]["seconds"], plain_seconds=plain_inference[0],
        bytes=float(zero["infer"]["bytes"] + one["infer"]["bytes"]),
        plain_bytes=float(np.asarray(queries).nbytes + logits.nbytes),
        accuracy=_accuracy(zero["outputs"], query_labels),
        plain_accuracy=_accuracy(logits, query_labels),
        details={"rounds (party 0)": zero["infer"]["rounds"],
                 "largest logit difference": float(np.max(np.abs(zero["outputs"] - logits))),
                 "logits off by more than 0.05": float(
                     np.mean(np.abs(zero["outputs"] - logits) > 0.05))},
    )
    return MPCRun(
        collection, training, inference,
        share_view(one["view_records"], halves[0], labels[0], classifier),
        share_view(one["view_query"], queries, query_labels, classifier),
        elapsed[0],
    )


def served_model(served: Any) -> Any:
    """The torch model from ``(hidden, state dict)``."""
    from pets_benchmarks.assess.workload import make_model

    hidden, state = served
    model = make_model(hidden)
    model.load_state_dict(state)
    return model.eval()


def _accuracy(logits: Any, labels: Any) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())
