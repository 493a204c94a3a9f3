"""The DP examples run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dp_training_example_prints_the_table_and_saves_the_plot(tmp_path: Path) -> None:
    out = tmp_path / "accuracy.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dp_training.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout and "no DP" in result.stdout
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
