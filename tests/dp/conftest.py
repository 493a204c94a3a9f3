"""Fixtures for the DP tests.

torch runs on one thread here: on a small shared machine its default thread
pool spins against other work and makes the tiny models below 5-10x slower.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every DP test trains small torch models: one thread (tests/conftest.py)."""
