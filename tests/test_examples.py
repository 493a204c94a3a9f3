"""The HE example and the command line run end to end (the DP examples: tests/dp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_encrypted_inference_example_keeps_plaintext_accuracy() -> None:
    out = run(str(ROOT / "examples" / "encrypted_inference.py"), "--quick")
    assert out.count("predictions agree on 100.0%") == 2  # batched and per-sample


def test_cli_info_lists_backends() -> None:
    out = run("-m", "pets", "info")
    assert "plain    ok" in out and "ckks     ok" in out


def test_cli_reports_pets_errors_without_a_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "pets", "infer", "http://127.0.0.1:1",
                             "--timeout", "2"], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "pets: ServiceUnavailableError: cannot reach http://127.0.0.1:1")
    assert "Traceback" not in result.stderr


def test_demo_tour_runs_every_section() -> None:
    out = run("-m", "pets", "demo", "--quick", "--skip-bench")
    for heading in ("1. Encrypted inference", "2. The same as a service",
                    "3. Secure multi-party computation", "4. Federated learning (Flower)",
                    "5. Differential privacy", "6. DP-SGD", "7. The attacks each technique"):
        assert heading in out
    assert "accuracy on 256 encrypted test digits" in out  # the two-process service answered
    assert "consistent with the accounted epsilon" in out
    assert "3 parties holding [142, 142, 142] rows trained one model under MPC" in out


@pytest.mark.slow
def test_joint_training_example_matches_pooled_training() -> None:
    out = run(str(ROOT / "examples" / "joint_training.py"))
    assert "3 parties holding [142, 142, 142] rows" in out
    assert "within 2 points of pooled plaintext training: yes" in out
