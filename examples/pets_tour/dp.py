"""The tour's DP sections: noise and budgets; DP-SGD and its membership audit."""

from __future__ import annotations

from pets_tour.common import Say, heading


def differential_privacy(quick: bool, say: Say) -> None:
    import numpy as np

    import pets

    heading("5. Differential privacy: calibrated noise, an enforced budget")
    say("input perturbation (local DP): each of 5000 people flips their own bit before sending it")
    truth = np.random.default_rng(0).random(5000) < 0.3
    reported = pets.dp.randomized_response(truth, epsilon=1.0)
    keep = pets.dp.RandomizedResponse(1.0).keep_probability
    estimate = (reported.mean() - (1 - keep)) / (2 * keep - 1)
    print(f"  true share {truth.mean():.3f}; reports say {reported.mean():.3f}; debiased "
          f"estimate {estimate:.3f} (each person protected at epsilon=1 without a trusted curator)")
    say("output perturbation: noise on released statistics, charged to a budget")
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5)
    counts = np.array([120.0, 45.0, 3.0])
    noisy = pets.dp.laplace(counts, epsilon=0.5, sensitivity=1.0, budget=budget)
    print(f"  counts {counts.tolist()} released as {np.round(noisy, 2).tolist()} "
          f"(Laplace, epsilon=0.5); spent {budget.spent}, remaining {budget.remaining}")
    try:
        pets.dp.laplace(counts, epsilon=0.75, sensitivity=1.0, budget=budget)
    except pets.BudgetExceededError as exc:
        print(f"  a further spend of epsilon=0.75 is refused:\n    {exc}")
    say("output perturbation of an encrypted result: the key holder adds noise, then decrypts")
    be = pets.backend("ckks", depth=1)
    encrypted_total = be.encrypt(counts).sum()
    released = pets.dp.release(encrypted_total, budget=budget,
                               mechanism=pets.dp.LaplaceMechanism(epsilon=0.4, sensitivity=1.0))
    print(f"  encrypted total {counts.sum()} released as {np.round(released, 2).tolist()}; "
          f"spent {budget.spent}")


def dp_training(quick: bool, say: Say) -> None:
    from pets_benchmarks.audit import run_audit
    from pets_benchmarks.dp import run_dp

    heading("6. DP-SGD (Opacus) against non-private training, and a membership audit")
    print(run_dp(epsilons=(1.0, 8.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0), quick=quick,
                 progress=say))
    print()
    print(run_audit(epsilon=2.0, shadows=2 if quick else 4, progress=say))
