"""Checking, in the run, that an attacker's view holds only ciphertexts or random shares.

A cell says *impossible* only when the run checked what the attacker held:

* CKKS ciphertexts (a server or an aggregator without the secret key): its own
  ``decrypt`` must refuse, it must hold no secret key, and the ciphertexts'
  coefficients, decoded from the bytes it received, must look uniform on
  ``[0, q_i)`` (Kolmogorov-Smirnov test, :data:`ALPHA`);
* additive shares (an MPC party): the share's 64-bit integers must look uniform on the
  ring (the same test), must not correlate with the data, and an attacker's classifier
  reading the share as data must name digits no better than chance (10%).

Every check is a test at level :data:`ALPHA` (one in a thousand), not at 5%: a run
makes about ten of them, and a 5% test would call a sound view leaky every other run.

Either check also runs the attack a decoder would try on those values (naming digits
from them), so a failed check gives a *measured* cell instead of "impossible".

>>> import numpy as np
>>> uniform_p(np.random.default_rng(0).random(10_000)) > ALPHA
True
>>> uniform_p(np.full(1_000, 0.5)) < ALPHA
True
>>> correlation_p(-0.025, 9_600) > ALPHA, above_chance_p(20, 40, 0.1) < ALPHA
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets_benchmarks.assess.cells import Cell, Cost, Leakage, advantage_over_chance
from pets_benchmarks.assess.stats import correlation_interval, share_interval

__all__ = ["ALPHA", "Verdict", "above_chance_p", "checked_cell", "ciphertext_check",
           "correlation_p", "share_check", "uniform_p"]

#: a view fails the uniformity test below this p-value
ALPHA = 1e-3
#: coefficients decoded per check (enough for the test, a few ciphertexts at most)
COEFFICIENTS = 200_000


@dataclass(frozen=True)
class Verdict:
    """What the run checked: ``impossible`` when every check passed; ``evidence`` lists
    each check and its numbers; ``leakage`` is the decoding attack (if one applies)."""

    impossible: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    leakage: Leakage | None = None

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.evidence.get("checks passed", {}).items() if not ok]


def uniform_p(values: np.ndarray) -> float:
    """Kolmogorov-Smirnov p-value of ``values`` (scaled to [0, 1)) against uniform."""
    from scipy.stats import kstest

    return float(kstest(np.asarray(values, dtype=np.float64).ravel(), "uniform").pvalue)


def correlation_p(r: float, n: int) -> float:
    """Two-sided p-value of a Pearson correlation ``r`` over ``n`` pairs being 0 (Fisher z)."""
    from scipy.stats import norm

    z = math.atanh(min(max(r, -0.999999), 0.999999)) * math.sqrt(max(n - 3, 1))
    return float(2 * norm.sf(abs(z)))


def above_chance_p(successes: int, trials: int, chance: float) -> float:
    """One-sided p-value of ``successes`` out of ``trials`` if each succeeds with ``chance``."""
    from scipy.stats import binom

    return float(binom.sf(successes - 1, trials, chance))


def _named(values: np.ndarray, labels: np.ndarray | None, classifier: Any) -> Leakage | None:
    """The attacker's classifier on ``values`` read as records of 64 pixels in [0, 1]."""
    if labels is None or classifier is None or values.size < 64 * len(labels):
        return None
    rows = np.asarray(values[: 64 * len(labels)], dtype=np.float64).reshape(len(labels), 64)
    named = int((classifier.predict(rows) == labels).sum())
    share = named / len(labels)
    return Leakage("digits named", share, share_interval(named, len(labels)), chance=0.1,
                   advantage=advantage_over_chance(share, 0.1),
                   details={"records": len(labels),
                            "attacker reads": "the decoded values as pixels"})


def _coefficients(backend: Any, tensor: Any) -> np.ndarray:
    """The RNS coefficients of ``tensor``'s ciphertexts, each divided by its modulus."""
    context = backend.keys.seal
    values: list[np.ndarray] = []
    count = 0
    for group in tensor.data.cts:
        for ct in group:
            moduli = [m.value() for m in
                      context.get_context_data(ct.parms_id()).parms().coeff_modulus()]
            n = ct.poly_modulus_degree()
            array = ct.dyn_array()
            raw = np.array([array.at(i) for i in range(array.size())], dtype=np.float64)
            q = np.tile(np.repeat(np.asarray(moduli, dtype=np.float64), n), ct.size())
            values.append(raw / q)
            count += raw.size
            if count >= COEFFICIENTS:
                return np.concatenate(values)
    return np.concatenate(values) if values else np.zeros(0)


def ciphertext_check(backend: Any, tensor: Any, *, refusal: str,
                     labels: np.ndarray | None = None, classifier: Any = None) -> Verdict:
    """Check a CKKS ``tensor`` as ``backend`` (the attacker's, public keys only) holds it;
    ``refusal`` is what its ``decrypt`` said when tried."""
    coefficients = _coefficients(backend, tensor)
    p = uniform_p(coefficients)
    refused = not refusal.startswith("no error")
    checks = {"decrypt refused": refused, "no secret key held": not backend.has_secret_key,
              "coefficients uniform": p >= ALPHA}
    leakage = _named(coefficients, labels, classifier)
    evidence: dict[str, Any] = {
        "checks passed": checks,
        "coefficients decoded": int(coefficients.size),
        "Kolmogorov-Smirnov p against uniform on [0, q)": p,
    }
    if leakage is not None:
        evidence["digits named from the coefficients"] = leakage.short()
    return Verdict(all(checks.values()), evidence, leakage)


def share_check(share: np.ndarray, scale: float, truth: np.ndarray, labels: np.ndarray,
                classifier: Any) -> Verdict:
    """Check one party's additive ``share`` (64-bit ring integers) of ``truth``."""
    ring = np.asarray(share, dtype=np.int64).ravel().view(np.uint64).astype(np.float64) / 2.0**64
    p = uniform_p(ring)
    flat = np.asarray(truth, dtype=np.float64).ravel()
    values = np.asarray(share, dtype=np.float64).ravel()
    r = float(np.corrcoef(values, flat)[0, 1])
    low, high = correlation_interval(r, flat.size)
    leakage = _named(values / scale, labels, classifier)
    assert leakage is not None
    r_p = correlation_p(r, flat.size)
    named_p = above_chance_p(round(leakage.value * len(labels)), len(labels), 0.1)
    checks = {"share uniform on the ring": p >= ALPHA, "no correlation with the data":
              r_p >= ALPHA, "digits named at chance": named_p >= ALPHA}
    return Verdict(all(checks.values()), {
        "checks passed": checks, "values": int(flat.size),
        "Kolmogorov-Smirnov p against uniform on the 64-bit ring": p,
        "correlation of the share with the data": r,
        "correlation interval (95%)": [low, high],
        "p of that correlation if none": r_p,
        "digits named from the share": leakage.short(),
        "p of naming that many by chance": named_p,
    }, leakage)


def checked_cell(stage: str, threat: str, technique: str, verdict: Verdict, *,
                 held: dict[str, Any], note: str, cost: Cost | None = None,
                 fallback: Leakage | None = None) -> Cell:
    """*impossible* when ``verdict`` passed; else the measured decoding attack (or
    ``fallback``, another attack on the same view), or *failed* when there is none."""
    evidence = {**held, **verdict.evidence}
    if verdict.impossible:
        return Cell(stage, threat, technique, "impossible", cost=cost, evidence=evidence,
                    note=note + " (checked in this run: " + ", ".join(
                        verdict.evidence["checks passed"]) + ")")
    why = "this run's check of the view failed (" + ", ".join(verdict.failed) + ")"
    leakage = fallback or verdict.leakage
    if leakage is None:
        return Cell(stage, threat, technique, "failed", cost=cost, evidence=evidence,
                    note=why + "; no attack on this view is measured here")
    return Cell(stage, threat, technique, "measured", cost=cost, evidence=evidence,
                leakage=leakage, note=why + "; the attack on what it held is shown instead")
