"""Shared helpers of the tour's sections."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Say", "heading"]

Say = Callable[[str], None]


def heading(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)
