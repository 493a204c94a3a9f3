"""The federated example runs end to end on Flower's simulation engine and prints every row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_federated_example_prints_the_comparison() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "federated_training.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    for setting in ("FedAvg (Flower's own)", "DP (noise shares, in the clear)",
                    "DP + encrypted aggregation", "pooled (central training)"):
        assert out.count(setting) == 2, setting  # once per split
    assert "3 clients, 2 rounds" in out
