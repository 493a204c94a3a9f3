"""``examples/encrypted_service.py`` starts a server and a client on localhost and agrees
with the plaintext model on every digit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_encrypted_service_example_agrees_with_plaintext() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "encrypted_service.py"),
                             "--quick"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "64 encrypted digits" in result.stdout
    assert "predictions agree on 100.0% with the plaintext model" in result.stdout
    assert "serving encrypted inference on http://127.0.0.1:" in result.stdout
