"""Stage 3, inference: what the serving side learns of a query, and a client of the model.

Threats:

* *eavesdropping server*: the share of queries whose digit the attacker's classifier
  names from what the server holds (chance 10%). none: the queries themselves; HE:
  ciphertexts; MPC: one share of each query. DP and FL do not hide a query;
* *model inversion* through the prediction API (black-box, Fredrikson et al. 2015):
  reconstructions of each class from confidences only, judged by the attacker's own
  classifier (chance 10%). none and DP: measured on the served model. HE and MPC give
  the querying client the same confidences (the logit difference is recorded), so they
  leave this threat as it is.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pets_benchmarks.assess.cells import Cell, Cost, Leakage, advantage_over_chance
from pets_benchmarks.assess.collection import digits_named
from pets_benchmarks.assess.config import dp_column
from pets_benchmarks.assess.context import Context, from_run
from pets_benchmarks.assess.evidence import checked_cell
from pets_benchmarks.assess.workload import stopwatch

__all__ = ["inference_cells", "inversion_leakage"]

logger = logging.getLogger(__name__)

STAGE = "inference"
SERVER, INVERSION = "eavesdropping server", "model inversion"


def inversion_leakage(report: Any, what: str) -> Leakage:
    """A ``ModelInversionReport`` as the matrix's leakage (share recognised vs chance)."""
    value = float(report.recognised)
    return Leakage("classes recognised", value, report.interval, chance=report.chance,
                   advantage=advantage_over_chance(value, report.chance),
                   details={"reconstructions": len(report.inputs), "queries": report.queries,
                            "access": what,
                            "mean target confidence": float(report.target_confidence.mean())})


def _api(model: Any) -> Any:
    """The model as a prediction API: a batch in, class probabilities out (numpy)."""
    import torch

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.as_tensor(np.asarray(batch), dtype=torch.float32))
            return torch.softmax(logits, dim=1).numpy()

    return predict


def _black_box(ctx: Context, model: Any) -> Leakage:
    import pets

    config = ctx.config
    report = pets.attacks.model_inversion(
        _api(model), input_shape=(64,), num_classes=10, evaluator=ctx.evaluator,
        samples_per_class=config.inversion_per_class, steps=config.blackbox_steps,
        directions=config.blackbox_directions, image_shape=(8, 8), seed=config.seed)
    return inversion_leakage(report, "confidences from the prediction API")


def _plain_inference(ctx: Context, model: Any = None) -> Cost:
    """Classifying the test digits in the clear with ``model`` (default: the plaintext one)."""
    import torch

    x, y = ctx.workload.rows(ctx.workload.test)
    with stopwatch() as elapsed, torch.no_grad():
        logits = (model or ctx.plain)(torch.as_tensor(x)).numpy()
    plain_elapsed, reference = elapsed, logits
    if model is not None:
        with stopwatch() as plain_elapsed, torch.no_grad():
            reference = ctx.plain(torch.as_tensor(x)).numpy()
    size = float(x.astype(np.float64).nbytes + logits.astype(np.float64).nbytes)
    return Cost(work=f"classify {len(y)} test digits in the clear"
                     + ("" if model is None else " with the DP-SGD model"),
                seconds=elapsed[0], plain_seconds=plain_elapsed[0], bytes=size, plain_bytes=size,
                accuracy=float((logits.argmax(axis=1) == y).mean()),
                plain_accuracy=float((reference.argmax(axis=1) == y).mean()))


def inference_cells(ctx: Context) -> list[Cell]:
    x, y = ctx.workload.rows(ctx.workload.test)
    plain = _plain_inference(ctx)
    cells = [Cell(STAGE, SERVER, "none", "measured", cost=plain,
                  leakage=digits_named(ctx.evaluator, x, y, what="the queries"),
                  note="the server reads every query")]
    for epsilon in ctx.config.epsilons:
        cells.append(Cell(STAGE, SERVER, dp_column(epsilon), "not applicable",
                          note="DP-SGD protects the training records, not a query the server "
                               "reads; hide queries with HE or MPC (local DP: see collection)"))
    cells.append(from_run(STAGE, SERVER, "HE (CKKS)", ctx.he, lambda he: checked_cell(
        STAGE, SERVER, "HE (CKKS)", he.server_check, held=he.server_view, cost=he.inference,
        note="the server evaluates on ciphertexts and never holds the secret key",
    ), skipped="the HE run is off in this configuration"))
    cells.append(from_run(STAGE, SERVER, "MPC (2 parties)", ctx.mpc, lambda mpc: checked_cell(
        STAGE, SERVER, "MPC (2 parties)", mpc.query_view, held={}, cost=mpc.inference,
        note="the model owner holds one share of each query; only the querying party "
             "learns the answer",
    ), skipped="the MPC run (party processes) is off in this configuration"))
    cells.append(Cell(STAGE, SERVER, "FL + DP + HE", "not applicable",
                      note="federated learning protects training; serving its model is an "
                           "inference like the other columns'"))
    logger.info("inference: black-box model inversion of the served models")
    cells.append(Cell(STAGE, INVERSION, "none", "measured", leakage=_black_box(ctx, ctx.plain),
                      cost=plain, note="against the plaintext model's prediction API"))
    for epsilon in ctx.config.epsilons:
        model = ctx.dp[epsilon].model
        cells.append(Cell(STAGE, INVERSION, dp_column(epsilon), "measured",
                          leakage=_black_box(ctx, model), cost=_plain_inference(ctx, model),
                          note="against the DP-SGD model's prediction API (its privacy cost "
                               "was paid in training: see the training row)"))
    cells.append(from_run(STAGE, INVERSION, "HE (CKKS)", ctx.he, lambda he: Cell(
        STAGE, INVERSION, "HE (CKKS)", "not applicable", cost=he.inference,
        evidence={"largest logit difference from plaintext": he.max_difference},
        note="the key holder decrypts the plaintext model's confidences: a querying client "
             "inverts the model as well as under 'none'",
    ), skipped="the HE run is off in this configuration"))
    cells.append(from_run(STAGE, INVERSION, "MPC (2 parties)", ctx.mpc, lambda mpc: Cell(
        STAGE, INVERSION, "MPC (2 parties)", "not applicable", cost=mpc.inference,
        evidence={"largest logit difference from plaintext":
                  mpc.inference.details.get("largest logit difference")},
        note="the querying party learns the model's confidences: it inverts the model as "
             "well as under 'none' (the weights stay secret, the outputs do not)",
    ), skipped="the MPC run (party processes) is off in this configuration"))
    cells.append(Cell(STAGE, INVERSION, "FL + DP + HE", "not applicable",
                      note="the federated model, once served, is attacked at release "
                           "(white-box, the stronger access)"))
    return cells
