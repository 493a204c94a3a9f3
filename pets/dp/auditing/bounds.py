"""Statistics of a membership-inference attack: AUC, TPR at low FPR, and an epsilon lower bound.

A mechanism that is ``(epsilon, delta)``-DP limits every membership test
(Kairouz et al. 2015): ``TPR <= e^eps * FPR + delta`` and
``1 - FPR <= e^eps * (1 - TPR) + delta``. An attack that beats those lines
therefore *proves* a lower bound on epsilon (Jagielski et al. 2020;
Nasr et al. 2021). Counts are turned into rates with Clopper-Pearson
intervals, so the bound holds at the stated confidence:

    eps_lb = max( ln((TPR_low - delta) / FPR_high),
                  ln((1 - delta - FPR_high) / (1 - TPR_low)) )

with TPR_low and FPR_high one-sided bounds at ``(1 - confidence) / 2`` each.
The threshold is chosen on one half of the scores and the bound computed on
the other half, so that picking the best threshold does not inflate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pets.dp._imports import require

__all__ = ["EpsilonBound", "auc", "clopper_pearson", "epsilon_lower_bound", "tpr_at_fpr"]

FloatArray = npt.NDArray[np.float64]


def clopper_pearson(
    successes: npt.ArrayLike, trials: int, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """One-sided Clopper-Pearson bounds, each holding with probability ``1 - alpha``."""
    beta = require("scipy.stats", purpose="Clopper-Pearson intervals").beta
    k = np.asarray(successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, beta.ppf(alpha, k, trials - k + 1), 0.0)
        high = np.where(k < trials, beta.ppf(1 - alpha, k + 1, trials - k), 1.0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def auc(member_scores: FloatArray, non_member_scores: FloatArray) -> float:
    """Area under the ROC curve (probability a member outscores a non-member; ties count half)."""
    rankdata = require("scipy.stats", purpose="AUC").rankdata
    ranks = rankdata(np.concatenate([member_scores, non_member_scores]))
    n1, n0 = len(member_scores), len(non_member_scores)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _rates(
    members: FloatArray, non_members: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Thresholds (descending) with the counts of members / non-members scoring >= each."""
    thresholds = np.unique(np.concatenate([members, non_members]))[::-1]
    tp = len(members) - np.searchsorted(np.sort(members), thresholds, side="left")
    fp = len(non_members) - np.searchsorted(np.sort(non_members), thresholds, side="left")
    return thresholds, tp.astype(np.float64), fp.astype(np.float64)


def tpr_at_fpr(member_scores: FloatArray, non_member_scores: FloatArray, fpr: float) -> float:
    """The highest TPR among thresholds whose FPR is at most ``fpr``.

    The resolution is ``1 / len(non_member_scores)``: below it, this is TPR at FPR 0.
    """
    _, tp, fp = _rates(member_scores, non_member_scores)
    ok = fp / len(non_member_scores) <= fpr
    return float(np.max(tp[ok]) / len(member_scores)) if np.any(ok) else 0.0


def _log_ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.maximum(numerator, 0.0) / denominator)
    return np.asarray(np.where(numerator > 0, out, -np.inf), dtype=np.float64)


def _bounds(
    tp: FloatArray, fp: FloatArray, n1: int, n0: int, alpha: float, delta: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per threshold and direction: lower bound, point estimate, upper end (shape 2 x T)."""
    tpr_low, tpr_high = clopper_pearson(tp, n1, alpha / 2)
    fpr_low, fpr_high = clopper_pearson(fp, n0, alpha / 2)
    tpr, fpr = tp / n1, fp / n0
    lower = np.stack(
        [_log_ratio(tpr_low - delta, fpr_high), _log_ratio(1 - delta - fpr_high, 1 - tpr_low)]
    )
    point = np.stack([_log_ratio(tpr - delta, fpr), _log_ratio(1 - delta - fpr, 1 - tpr)])
    upper = np.stack(
        [_log_ratio(tpr_high - delta, fpr_low), _log_ratio(1 - delta - fpr_low, 1 - tpr_high)]
    )
    return lower, point, upper


@dataclass(frozen=True)
class EpsilonBound:
    """Empirical epsilon: ``lower`` holds at the confidence level, ``upper`` ends the interval."""

    lower: float
    estimate: float
    upper: float
    threshold: float


def epsilon_lower_bound(
    member_scores: FloatArray,
    non_member_scores: FloatArray,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    seed: int = 0,
) -> EpsilonBound:
    """Pick a threshold on half the scores, bound epsilon with the other half.

    >>> import numpy as np
    >>> from pets.dp.auditing.bounds import epsilon_lower_bound
    >>> rng = np.random.default_rng(0)
    >>> bound = epsilon_lower_bound(rng.normal(2, 1, 2000), rng.normal(0, 1, 2000))
    >>> bound.lower > 0.5
    True
    """
    rng = np.random.default_rng(seed)
    alpha = 1.0 - confidence

    def split(scores: FloatArray) -> tuple[FloatArray, FloatArray]:
        order = rng.permutation(len(scores))
        half = len(scores) // 2
        return scores[order[:half]], scores[order[half:]]

    m_select, m_eval = split(np.asarray(member_scores, dtype=np.float64))
    n_select, n_eval = split(np.asarray(non_member_scores, dtype=np.float64))
    thresholds, tp, fp = _rates(m_select, n_select)
    lower, _, _ = _bounds(tp, fp, len(m_select), len(n_select), alpha, delta)
    if not np.any(np.isfinite(lower)):
        return EpsilonBound(0.0, 0.0, 0.0, float("nan"))
    direction, index = np.unravel_index(int(np.argmax(lower)), lower.shape)
    threshold = float(thresholds[index])
    tp_eval = np.array([np.sum(m_eval >= threshold)], dtype=np.float64)
    fp_eval = np.array([np.sum(n_eval >= threshold)], dtype=np.float64)
    low, point, high = _bounds(tp_eval, fp_eval, len(m_eval), len(n_eval), alpha, delta)

    def clean(value: float) -> float:
        return max(0.0, value) if not math.isnan(value) else 0.0

    return EpsilonBound(
        lower=clean(float(low[direction, 0])),
        estimate=clean(float(point[direction, 0])),
        upper=clean(float(high[direction, 0])),
        threshold=threshold,
    )
