"""CrypTen's settings read from plain attributes while a repeated step runs.

CrypTen keeps its settings in an OmegaConf tree and reads one on every
attribute access of every shared tensor (``cfg.debug.validation_mode``, in
its ``__getattribute__``), besides those its protocols read: a training step of
a small model spent about half its local CPU time there. :func:`frozen_settings`
swaps the tree for a snapshot of plain objects for the duration of a block in
which nothing changes a setting (a training step), and puts the tree back.

>>> from pets.backends.mpc.engine import start_single_process, stop
>>> _ = start_single_process()
>>> from crypten.config import cfg
>>> with frozen_settings():
...     cfg.encoder.precision_bits
16
>>> stop()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

__all__ = ["frozen_settings"]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): _plain(v) for k, v in value.items()})
    return value


@contextmanager
def frozen_settings() -> Iterator[None]:
    """CrypTen's current settings as plain attributes inside the block (read-only use)."""
    from crypten.config import cfg
    from omegaconf import OmegaConf

    tree = object.__getattribute__(cfg, "config")
    object.__setattr__(cfg, "config", _plain(OmegaConf.to_container(tree, resolve=True)))
    try:
        yield
    finally:
        object.__setattr__(cfg, "config", tree)
