"""Stage 2, training: what whoever receives the training updates rebuilds of a record.

Threat: *reconstruction* (Zhu et al. 2019; the analytic attack of Phong et al. 2017)
by the server or aggregator that receives a participant's update. The update is the
worst case, one example's gradient of the MLP (as a federated client with one record,
or a DP-SGD step's single example, sends it). ``pets.attacks.gradient_inversion``
rebuilds the record; a record counts as *rebuilt* at PSNR >= 20 dB against the truth
(pixel RMSE <= 0.1 of the range; a blank image scores about 6 dB). The metric is the
share rebuilt, with a Clopper-Pearson interval.

* none: the update as computed;
* DP: clipped to the DP-SGD run's norm with its noise multiplier (``clip_and_noise``);
* HE: not applicable (CKKS cannot train; the refusal is recorded);
* MPC: gradients are secret-shared, never opened; FL + DP + HE: the aggregator sums
  ciphertexts. Both *impossible* only when this run's check of the view passes
  (:mod:`~pets_benchmarks.assess.evidence`); for FL the evidence adds what a key
  holder colluding with the aggregator would rebuild (one update with only its
  client's noise share), the attack shown if the check fails.
"""

from __future__ import annotations

import logging
import math
import statistics
from typing import Any

from pets_benchmarks.assess.cells import Cell, Leakage
from pets_benchmarks.assess.config import dp_column
from pets_benchmarks.assess.context import Context, from_run
from pets_benchmarks.assess.evidence import checked_cell
from pets_benchmarks.assess.stats import share_interval
from pets_benchmarks.assess.workload import make_model

__all__ = ["REBUILT_PSNR", "reconstruction", "training_cells"]

logger = logging.getLogger(__name__)

STAGE, THREAT = "training", "reconstruction"
REBUILT_PSNR = 20.0


def reconstruction(ctx: Context, *, noise_multiplier: float | None) -> Leakage:
    """Invert one-example updates of the first ``reconstructions`` members."""
    import torch

    import pets

    model = make_model(ctx.config.hidden, ctx.config.seed)
    x, y = ctx.workload.rows(ctx.workload.members[: ctx.config.reconstructions])
    psnrs, labels = [], []
    for index in range(len(y)):
        example = torch.as_tensor(x[index : index + 1])
        label = torch.as_tensor(y[index : index + 1])
        loss = torch.nn.functional.cross_entropy(model(example), label)
        update: Any = torch.autograd.grad(loss, list(model.parameters()))
        if noise_multiplier is not None:
            update = pets.attacks.clip_and_noise(
                update, max_grad_norm=ctx.config.clip_norm, noise_multiplier=noise_multiplier,
                seed=ctx.config.seed + index)
        report = pets.attacks.gradient_inversion(
            model, update, input_shape=(64,), num_classes=10, true_inputs=example,
            true_labels=label, data_range=1.0)
        psnrs.append(float(report.psnr if report.psnr is not None else math.nan))
        labels.append(float(report.label_accuracy or 0.0))
    rebuilt = sum(p >= REBUILT_PSNR for p in psnrs)
    share = rebuilt / len(psnrs)
    details: dict[str, Any] = {
        "updates attacked": len(psnrs),
        "median PSNR (dB)": statistics.median(psnrs),
        "labels recovered": statistics.mean(labels),
        "rebuilt means": f"PSNR >= {REBUILT_PSNR:g} dB against the record",
    }
    if noise_multiplier is not None:
        details["noise multiplier"] = noise_multiplier
    return Leakage("records rebuilt", share, share_interval(rebuilt, len(psnrs)), chance=0.0,
                   advantage=share, details=details)


def training_cells(ctx: Context) -> list[Cell]:
    logger.info("training: gradient inversion of %d updates", ctx.config.reconstructions)
    cells = [Cell(STAGE, THREAT, "none", "measured",
                  leakage=reconstruction(ctx, noise_multiplier=None), cost=ctx.plain_cost,
                  note="the server receives one example's gradient as computed")]
    for epsilon in ctx.config.epsilons:
        trained = ctx.dp[epsilon]
        cells.append(Cell(
            STAGE, THREAT, dp_column(epsilon), "measured",
            leakage=reconstruction(ctx, noise_multiplier=trained.noise_multiplier),
            cost=ctx.dp_cost[epsilon],
            note=f"DP-SGD's clipping (norm {ctx.config.clip_norm:g}) and noise (multiplier "
                 f"{trained.noise_multiplier:.3g}) on the update",
        ))
    cells.append(from_run(STAGE, THREAT, "HE (CKKS)", ctx.he, lambda he: Cell(
        STAGE, THREAT, "HE (CKKS)", "not applicable",
        evidence={"PrivateModel.fit under CKKS": he.training_refusal},
        note="pets' CKKS backend cannot train (no comparisons, fixed depth): HE protects "
             "inference; train with DP, MPC or FL",
    ), skipped="the HE run is off in this configuration"))
    cells.append(from_run(STAGE, THREAT, "MPC (2 parties)", ctx.mpc, lambda mpc: checked_cell(
        STAGE, THREAT, "MPC (2 parties)", mpc.record_view, held={}, cost=mpc.training,
        note="records, labels, weights and gradients stay secret-shared; no update is ever "
             "opened (a party and the dealer must not collude)",
    ), skipped="the MPC run (party processes) is off in this configuration"))
    cells.append(from_run(STAGE, THREAT, "FL + DP + HE", ctx.fl, lambda fl: _federated(ctx, fl),
                          skipped="the federated run is off in this configuration"))
    return cells


def _federated(ctx: Context, fl: Any) -> Cell:
    colluding = reconstruction(ctx, noise_multiplier=fl.noise_multiplier_one_update)
    held = dict(fl.aggregator_view)
    held["if a key holder colludes: records rebuilt from one update"] = colluding.short()
    held["if a key holder colludes: noise multiplier of one update"] = (
        fl.noise_multiplier_one_update)
    return checked_cell(STAGE, THREAT, "FL + DP + HE", fl.aggregator_check, held=held,
                        cost=fl.training, fallback=colluding,
                        note="the aggregator sums ciphertexts and never holds a key; each "
                             "update also carries its client's DP noise share")
