"""The overhead report runs end to end and keeps encrypted accuracy (no timing asserted)."""

from __future__ import annotations

import math

from pets_benchmarks.he import run_he


def test_he_report_compares_every_technique_in_one_run() -> None:
    report = run_he(batch=256, latency_samples=1, recipe_samples=1)
    names = [row["technique"] for row in report.table.as_dicts()]
    assert names == [
        "plain (numpy)",
        "ckks batched (pets)",
        "ckks batched (raw SEAL, no pets)",
        "ckks per-sample (pets)",
        "TenSEAL recipe (ckks_vector.mm)",
        "ckks batched (TenSEAL CKKSVector API)",
    ]
    assert all(math.isfinite(v) and v > 0 for k, v in report.ratios.items() if "accuracy" not in k)
    # the encrypted model classifies the test digits as the plaintext one does
    assert report.ratios["plain accuracy - ckks batched accuracy, points (target <= 0.5)"] <= 0.5
    rows = {row["technique"]: row for row in report.table.as_dicts()}
    assert rows["ckks per-sample (pets)"]["accuracy"] == 1.0  # agrees with plaintext argmax
    assert rows["ckks batched (TenSEAL CKKSVector API)"]["accuracy"] == 1.0
    # only the rotation keys the model needs: smaller than TenSEAL's all-Galois context
    assert report.parameters["public_bytes"] < report.parameters["recipe_public_bytes"]
