"""Stage 1, data collection: what the collecting server learns about each person's record.

Threat: an *eavesdropping server* (the collector, or whoever reads its storage). The
metric is the share of collected records whose digit the attacker's own classifier
names from what the server holds (chance: 10%), with a Clopper-Pearson interval.

* none: the server holds the records;
* DP (local, input perturbation): each person adds Gaussian noise calibrated to
  ``(epsilon, delta)`` for their whole record (L2 sensitivity 8: the diameter of
  ``[0, 1]^64``) before sending it, with ``pets.dp.gaussian``; the attacker reads the
  noised records with the nearest class mean of its own rows (what suits isotropic
  Gaussian noise, and at least as good as its logistic regression there);
* HE: the server stores ciphertexts; MPC: each server holds one random share;
  FL: no record leaves its owner. *impossible* only when this run's check of that view
  passes (:mod:`~pets_benchmarks.assess.evidence`); otherwise the attack on it is shown.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pets_benchmarks.assess.cells import Cell, Cost, Leakage, advantage_over_chance
from pets_benchmarks.assess.config import dp_column
from pets_benchmarks.assess.context import Context, from_run
from pets_benchmarks.assess.evidence import checked_cell
from pets_benchmarks.assess.stats import share_interval
from pets_benchmarks.assess.workload import stopwatch

__all__ = ["collection_cells", "digits_named"]

logger = logging.getLogger(__name__)

STAGE, THREAT = "collection", "eavesdropping server"
SENSITIVITY = math.sqrt(64.0)  # L2 distance between any two records in [0, 1]^64


def digits_named(classifier: object, x: np.ndarray, y: np.ndarray, *, what: str) -> Leakage:
    """The share of rows of ``x`` whose digit ``classifier`` names, against chance 10%."""
    named = int((classifier.predict(x) == y).sum())  # type: ignore[attr-defined]
    share = named / len(y)
    return Leakage("digits named", share, share_interval(named, len(y)), chance=0.1,
                   advantage=advantage_over_chance(share, 0.1),
                   details={"records": len(y), "attacker reads": what})


def _nearest_mean(x: np.ndarray, y: np.ndarray) -> object:
    import warnings

    from sklearn.neighbors import NearestCentroid

    with warnings.catch_warnings():  # "zero standard deviation": digits' blank border pixels
        warnings.simplefilter("ignore", UserWarning)
        return NearestCentroid().fit(x, y)


def _utility(x: np.ndarray, y: np.ndarray, ctx: Context) -> float:
    """Test accuracy of a nearest-class-mean classifier fitted on the collected rows."""
    test_x, test_y = ctx.workload.rows(ctx.workload.test)
    return float(_nearest_mean(x, y).score(test_x, test_y))  # type: ignore[attr-defined]


def collection_cells(ctx: Context) -> list[Cell]:
    import pets.dp

    records, labels = ctx.workload.rows(ctx.workload.collected)
    records = records.astype(np.float64)
    raw_accuracy = _utility(records, labels, ctx)
    work = (f"collect {len(labels)} records; utility: test accuracy of the nearest-class-mean "
            "classifier fitted on them")
    cells = [Cell(
        STAGE, THREAT, "none", "measured",
        leakage=digits_named(ctx.evaluator, records, labels, what="the records"),
        cost=Cost(work=work, bytes=float(records.nbytes), plain_bytes=float(records.nbytes),
                  accuracy=raw_accuracy, plain_accuracy=raw_accuracy),
        note="the server holds every record as sent",
    )]
    attacker = _nearest_mean(*ctx.workload.rows(ctx.workload.attacker))
    for epsilon in ctx.config.epsilons:
        logger.info("collection: local DP at epsilon %g", epsilon)
        scale = pets.dp.GaussianMechanism(epsilon, ctx.config.delta, SENSITIVITY).scale
        with stopwatch() as noising:
            noisy = np.asarray(pets.dp.gaussian(records, epsilon=epsilon, delta=ctx.config.delta,
                                                sensitivity=SENSITIVITY), dtype=np.float64)
        leakage = digits_named(attacker, noisy, labels,
                               what="the noised records (nearest class mean)")
        cells.append(Cell(
            STAGE, THREAT, dp_column(epsilon), "measured", leakage=leakage,
            cost=Cost(work=work, seconds=noising[0], bytes=float(noisy.nbytes),
                      plain_bytes=float(records.nbytes), accuracy=_utility(noisy, labels, ctx),
                      plain_accuracy=raw_accuracy,
                      details={"noise std per pixel": scale, "delta": ctx.config.delta,
                               "mechanism": "Gaussian (pets.dp.gaussian), one record's L2 "
                                            "sensitivity 8; labels sent as they are"}),
            note="local DP: each record noised by its owner before it is sent",
        ))
    cells.append(from_run(STAGE, THREAT, "HE (CKKS)", ctx.he, lambda he: checked_cell(
        STAGE, THREAT, "HE (CKKS)", he.collection_check, held=he.collection_view,
        cost=he.collection,
        note="the server stores CKKS ciphertexts under keys it does not hold (128-bit security)",
    ), skipped="the HE run is off in this configuration"))
    cells.append(from_run(STAGE, THREAT, "MPC (2 parties)", ctx.mpc, lambda mpc: checked_cell(
        STAGE, THREAT, "MPC (2 parties)", mpc.record_view, held={}, cost=mpc.collection,
        note="each server holds one additive share: uniformly random on its own; the record "
             "needs both (and the servers must not collude)",
    ), skipped="the MPC run (party processes) is off in this configuration"))
    cells.append(from_run(STAGE, THREAT, "FL + DP + HE", ctx.fl, lambda fl: checked_cell(
        STAGE, THREAT, "FL + DP + HE", fl.aggregator_check, held=fl.aggregator_view,
        cost=Cost(work="no collection: records stay with their owners", bytes=0.0),
        note="no record leaves its owner; the aggregator receives encrypted model updates",
    ), skipped="the federated run is off in this configuration"))
    return cells
