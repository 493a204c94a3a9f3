"""Stage 4, release: what the published model gives away about its training data.

Threats, each against the released model (white-box):

* *membership* (``pets.attacks.membership_inference``: loss, and LiRA/RMIA with shadow
  models trained the way the target was): the strongest attack's AUC over members and
  as many non-members (chance 0.5), with a Hanley-McNeil interval; the epsilon lower
  bound is in the details;
* *model inversion* (white-box gradients): the share of class reconstructions the
  attacker's own classifier recognises (chance 10%);
* *property* (``pets.attacks.property_inference``, shadow models and a meta-classifier
  on their outputs): telling training sets with 30% zeros from sets with 10% zeros
  (chance 50%).

none and DP: measured. HE and MPC protect data in use, not what a released model
memorised (the same model is released): not applicable. FL + DP + HE: membership and
inversion are measured on the federation's global model; property inference would
need shadow federations and is not run.
"""

from __future__ import annotations

import logging
from typing import Any

from pets_benchmarks.assess.cells import Cell, Leakage, advantage_over_chance
from pets_benchmarks.assess.config import dp_column
from pets_benchmarks.assess.context import Context, from_run
from pets_benchmarks.assess.inference import inversion_leakage
from pets_benchmarks.assess.stats import auc_interval
from pets_benchmarks.assess.workload import train_dp, train_plain

__all__ = ["release_cells"]

logger = logging.getLogger(__name__)

STAGE = "release"
MEMBERSHIP, INVERSION, PROPERTY = "membership", "model inversion", "property"
IN_USE = ("{name} protects data while it is used (training inputs, queries); the released "
          "model is the same plaintext model, so it leaks as the 'none' or 'DP' column does")


def _membership(ctx: Context, model: Any, train_fn: Any, *, delta: float = 0.0,
                attacks: tuple[str, ...] | None = None) -> Leakage:
    import pets

    w = ctx.workload
    chosen = attacks or ctx.config.membership_attacks
    shadows = any(name != "loss" for name in chosen)
    report = pets.attacks.membership_inference(
        model, w.rows(w.members), w.rows(w.non_members), attacks=chosen,
        reference=w.rows(w.reference) if shadows else None,
        train_fn=train_fn if shadows else None, num_shadows=max(ctx.config.shadows, 1),
        delta=delta, seed=ctx.config.seed)
    auc = float(report.auc)
    return Leakage("AUC", auc, auc_interval(auc, report.n_members, report.n_non_members),
                   chance=0.5, advantage=advantage_over_chance(auc, 0.5), details={
                       "attack with the highest epsilon bound": report.strongest.attack,
                       "AUC by attack": {k: r.auc for k, r in report.results.items()},
                       "TPR at 1% FPR": report.tpr_at_fpr.get(0.01),
                       "epsilon lower bound (95%)": report.epsilon_lower_bound,
                       "members": report.n_members, "shadow models": (
                           ctx.config.shadows if shadows else 0),
                   })


def _inversion(ctx: Context, model: Any) -> Leakage:
    import pets

    report = pets.attacks.model_inversion(
        model, input_shape=(64,), num_classes=10, evaluator=ctx.evaluator,
        samples_per_class=ctx.config.inversion_per_class, steps=ctx.config.inversion_steps,
        seed=ctx.config.seed)
    return inversion_leakage(report, "the model's weights (white-box)")


def _property(ctx: Context, train_fn: Any) -> Leakage:
    import numpy as np

    import pets

    w, config = ctx.workload, ctx.config
    pool = np.concatenate([w.non_members, w.reference, w.attacker])
    x, y = w.rows(pool)
    report = pets.attacks.property_inference(
        train_fn,
        pets.attacks.class_share_sampler(x, y, label=0, share=0.3, size=config.property_size),
        pets.attacks.class_share_sampler(x, y, label=0, share=0.1, size=config.property_size),
        num_shadows=config.property_shadows, num_targets=config.property_targets,
        seed=config.seed)
    return Leakage("meta-classifier accuracy", report.accuracy, report.interval, chance=0.5,
                   advantage=advantage_over_chance(report.accuracy, 0.5), details={
                       "property": "30% vs 10% of the training set are zeros",
                       "target models": report.n_targets, "shadow models": report.n_shadows,
                       "p-value": report.p_value, "features": report.features})


def release_cells(ctx: Context) -> list[Cell]:
    config = ctx.config
    cells: list[Cell] = []

    def plain_fn(x: Any, y: Any) -> Any:
        return train_plain(x, y, config=config, seed=config.seed + 1)

    logger.info("release: attacks on the plaintext model")
    models: list[tuple[str, Any, Any, float, Any]] = [
        ("none", ctx.plain, plain_fn, 0.0, ctx.plain_cost)]
    for epsilon in config.epsilons:
        def dp_fn(x: Any, y: Any, epsilon: float = epsilon) -> Any:
            return train_dp(x, y, epsilon=epsilon, config=config, seed=config.seed + 1).model

        models.append((dp_column(epsilon), ctx.dp[epsilon].model, dp_fn, config.delta,
                       ctx.dp_cost[epsilon]))
    for technique, model, train_fn, delta, cost in models:
        logger.info("release: membership, inversion and property inference (%s)", technique)
        cells.append(Cell(STAGE, MEMBERSHIP, technique, "measured", cost=cost,
                          leakage=_membership(ctx, model, train_fn, delta=delta)))
        cells.append(Cell(STAGE, INVERSION, technique, "measured", cost=cost,
                          leakage=_inversion(ctx, model)))
        if technique == "none" or config.property_dp:
            cells.append(Cell(STAGE, PROPERTY, technique, "measured", cost=cost,
                              leakage=_property(ctx, train_fn)))
        else:
            cells.append(Cell(STAGE, PROPERTY, technique, "skipped", cost=cost,
                              note=f"off in this configuration: an interval within +-0.15 "
                                   f"needs {config.property_targets} target models of each "
                                   f"kind and {config.property_shadows} shadows, each one "
                                   "more DP-SGD run (the full run measures it)"))
    for threat in (MEMBERSHIP, INVERSION, PROPERTY):
        cells.append(Cell(STAGE, threat, "HE (CKKS)", "not applicable",
                          note=IN_USE.format(name="HE")))
        cells.append(Cell(STAGE, threat, "MPC (2 parties)", "not applicable",
                          note=IN_USE.format(name="MPC")))
    cells.extend(_federated(ctx))
    return cells


def _federated(ctx: Context) -> list[Cell]:
    from pets_benchmarks.assess.fl_run import torch_twin

    technique, skipped = "FL + DP + HE", "the federated run is off in this configuration"

    def model_of(fl: Any) -> Any:
        return torch_twin(fl.parameters)

    logger.info("release: attacks on the federated global model")
    return [
        from_run(STAGE, MEMBERSHIP, technique, ctx.fl, lambda fl: Cell(
            STAGE, MEMBERSHIP, technique, "measured", cost=fl.training,
            leakage=_membership(ctx, model_of(fl), None, attacks=("loss",),
                                delta=ctx.config.delta),
            note="the global model; its members are the clients' records (loss attack: "
                 "shadow federations are not run)"), skipped=skipped),
        from_run(STAGE, INVERSION, technique, ctx.fl, lambda fl: Cell(
            STAGE, INVERSION, technique, "measured", cost=fl.training,
            leakage=_inversion(ctx, model_of(fl)), note="the global model"), skipped=skipped),
        Cell(STAGE, PROPERTY, technique, "skipped",
             note="property inference against a federation needs shadow federations "
                  "(tens of Flower runs); not run"),
    ]
