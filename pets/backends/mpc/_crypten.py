"""Import CrypTen 0.4.1 on a current torch: the one place that knows how.

Why a workaround is needed
--------------------------
CrypTen 0.4.1 (its last release) imports its ONNX model importer,
``crypten/nn/onnx_converter.py``, from ``crypten/nn/__init__.py`` at import time.
That module tries ``torch.onnx.symbolic_registry`` (removed in torch 1.13) and then
``torch.onnx._internal.registration.registry`` (removed in later torch 2.x releases),
so on torch 2.13 ``import crypten`` fails with ``ModuleNotFoundError`` before any of
CrypTen's MPC code runs.

What is stubbed, and what breaks
--------------------------------
Only that one name. Before the import we put a stand-in module
``torch.onnx._internal.registration`` into ``sys.modules`` whose ``registry``
attribute raises :class:`~pets.errors.BackendError` on any use, import CrypTen,
then take the stand-in out again so nothing else in the process sees it. The
registry is used only by CrypTen's ONNX importer (``crypten.nn.from_pytorch`` /
``from_onnx``), which is broken on current torch anyway; pets never calls it
(``pets.compile`` lowers models itself). Everything pets uses -- cryptensors,
comparisons, ``crypten.nn`` modules, autograd, the communicator and providers --
imports and works unchanged.

How CrypTen is installed
------------------------
CrypTen's pinned requirements (an old torch, torchvision, scikit-learn) cannot be
met next to torch 2.13, so it is installed without them, plus what it really
needs at run time (see :data:`INSTALL`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

from pets.errors import BackendError, BackendNotInstalledError

__all__ = ["INSTALL", "load_crypten"]

#: The commands that install CrypTen next to torch 2.13 (the README's set-up does this).
INSTALL = "pip install --no-deps crypten==0.4.1 && pip install omegaconf onnx pyyaml"

_STUBBED = "torch.onnx._internal.registration"
_LOCK = threading.Lock()
_MODULE: types.ModuleType | None = None


class _UnusableOnnxRegistry:
    """Stands in for torch's removed ONNX symbolic registry; any use is an error."""

    def __getattr__(self, name: str) -> Any:
        raise BackendError(
            "CrypTen's ONNX importer (crypten.nn.from_pytorch / from_onnx) does not work on "
            "this torch; pets lowers models itself: use pets.compile(module, backend=...)"
        )


def _import_with_stub() -> types.ModuleType:
    """Import ``crypten`` with the stand-in registry present only during the import."""
    try:
        importlib.import_module(_STUBBED)
        needs_stub = False  # an older torch that still has it: import as is
    except ImportError:
        needs_stub = True
    if not needs_stub:
        return importlib.import_module("crypten")
    stub = types.ModuleType(_STUBBED, "pets stand-in: torch's ONNX registry is gone (see pets)")
    stub.registry = _UnusableOnnxRegistry()  # type: ignore[attr-defined]
    sys.modules[_STUBBED] = stub
    try:
        return importlib.import_module("crypten")
    finally:
        if sys.modules.get(_STUBBED) is stub:
            del sys.modules[_STUBBED]


def load_crypten() -> types.ModuleType:
    """The ``crypten`` module, imported once with the workaround above.

    Raises :class:`~pets.errors.BackendNotInstalledError` naming the install
    commands when CrypTen (or one of its run-time needs) is missing.

    >>> crypten = load_crypten()
    >>> crypten.__version__
    '0.4.1'
    """
    global _MODULE
    with _LOCK:
        if _MODULE is not None:
            return _MODULE
        if importlib.util.find_spec("crypten") is None:
            raise BackendNotInstalledError(
                f"the 'mpc' backend needs CrypTen, which is not installed; install it with: "
                f"{INSTALL}"
            )
        try:
            _MODULE = _import_with_stub()
        except ImportError as exc:
            raise BackendNotInstalledError(
                f"CrypTen is installed but cannot be imported ({exc}); install its run-time "
                f"needs with: {INSTALL}"
            ) from exc
        return _MODULE
