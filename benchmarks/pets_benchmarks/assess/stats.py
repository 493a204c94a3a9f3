"""Confidence intervals for the matrix's metrics: a share, an AUC, a correlation.

>>> low, high = share_interval(90, 100)
>>> round(low, 3), round(high, 3)
(0.824, 0.951)
>>> low, high = auc_interval(0.5, 300, 300)
>>> round(high - low, 3)
0.092
>>> low, high = correlation_interval(0.0, 10_000)
>>> round(high, 3)
0.02
"""

from __future__ import annotations

import math

__all__ = ["auc_interval", "correlation_interval", "share_interval"]


def share_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of ``successes / trials``."""
    from scipy.stats import beta

    alpha = (1.0 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(alpha, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(
        beta.ppf(1 - alpha, successes + 1, trials - successes))
    return low, high


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def auc_interval(auc: float, positives: int, negatives: int,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Normal interval of an AUC from its Hanley-McNeil (1982) standard error, in [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc)
                + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def correlation_interval(r: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a Pearson correlation ``r`` over ``n`` pairs."""
    r = min(max(r, -0.999999), 0.999999)
    z, half = math.atanh(r), _z(confidence) / math.sqrt(max(n - 3, 1))
    return math.tanh(z - half), math.tanh(z + half)
