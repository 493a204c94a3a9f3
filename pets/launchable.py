"""Checks that a function can be started in party processes, made before any process starts.

:func:`pets.run_parties` starts each party with ``multiprocessing``'s *spawn*:
a fresh interpreter imports the module that defines ``fn`` (for a script, the
script itself, as ``__mp_main__``) and looks ``fn`` up by name. Two common
mistakes break that deep inside ``multiprocessing``, with a traceback per
process:

* ``fn`` defined inside another function, or a lambda: it has no importable name;
* a script that calls ``run_parties`` at its top level, outside
  ``if __name__ == "__main__":``: every party re-imports the script and would
  start the parties again (``multiprocessing`` refuses with a RuntimeError).

:func:`check_launchable` finds both, and a ``fn`` defined in an interactive
session or ``python -c`` (whose ``__main__`` has no file to import), and
raises a :class:`~pets.errors.ParameterError` saying how to fix it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from pets.errors import ParameterError

__all__ = ["check_launchable"]

_GUARD = 'if __name__ == "__main__":'


def check_launchable(fn: Callable[..., Any], *, caller: str = "run_parties") -> None:
    """Raise :class:`ParameterError` unless spawned processes can import ``fn`` by name
    and the main script does not start the parties again when they import it."""
    target: Any = fn.func if isinstance(fn, functools.partial) else fn
    bound = inspect.ismethod(target)  # pickled as (its object, its name): no lookup by name
    if bound:
        target = target.__func__
    module_name = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not callable(target) or module_name is None or qualname is None:
        return  # a callable object: pickle will say whether it travels
    name = getattr(target, "__name__", qualname)
    if "<lambda>" in qualname or "<locals>" in qualname:
        lambda_ = name == "<lambda>"
        kind = "a lambda" if lambda_ else f"{name!r}, defined inside another function"
        raise ParameterError(
            f"{caller} gets {kind}: each party process imports fn by its module and name, "
            f"and it has none there. Fix: define it at module level (def "
            f"{'work' if lambda_ else name}(party): ... at the top of your script or in a "
            "module) and pass that function"
        )
    main = sys.modules.get("__main__")
    if module_name in ("__main__", "__mp_main__"):
        if main is None or not getattr(main, "__file__", None):
            raise ParameterError(
                f"{caller} gets {name!r}, defined in an interactive session (or python -c), "
                "which party processes cannot import. Fix: put it in a .py file (a module), "
                "import it from there, and pass the imported function"
            )
    elif not bound:
        _check_importable(target, module_name, qualname, caller)
    if main is not None and getattr(main, "__file__", None):
        _check_guarded(main, caller)


def _check_importable(target: Any, module_name: str, qualname: str, caller: str) -> None:
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        found = None
    if found is not target and getattr(found, "__wrapped__", None) is not target:
        raise ParameterError(
            f"{caller}: fn {qualname!r} cannot be found again as {module_name}.{qualname}, "
            "which is how each party process imports it (was it replaced, or made at run "
            "time?). Fix: pass a function defined with def at module level"
        )


def _module_frame(main: ModuleType) -> FrameType | None:
    """The frame running the main script's top-level code, if the call comes from it."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            return frame
        frame = frame.f_back
    return None


def _guarded_lines(source: str) -> list[tuple[int, int]]:
    """Line spans of the top-level ``if __name__ == "__main__":`` blocks of ``source``."""
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [node.test.left, *node.test.comparators]
            texts = {n.id if isinstance(n, ast.Name) else
                     n.value if isinstance(n, ast.Constant) else None for n in names}
            if texts == {"__name__", "__main__"}:
                spans.append((node.lineno, node.end_lineno or node.lineno))
    return spans


def _check_guarded(main: ModuleType, caller: str) -> None:
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name.endswith(".__main__"):
        return  # ``python -m package``: spawn does not re-run a package's __main__
    frame = _module_frame(main)
    if frame is None:
        return  # called from a function that the guarded part (or a test runner) called
    path = str(main.__file__)
    try:
        with open(path, encoding="utf-8") as file:
            spans = _guarded_lines(file.read())
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno
    if not any(start <= line <= end for start, end in spans):
        raise ParameterError(
            f"{caller} is called at the top level of {path} (line {line}), outside "
            f"{_GUARD} Each party process starts by importing this script, which would "
            f"start the parties again. Fix: put the code that calls {caller} under "
            f"{_GUARD} at the end of the script"
        )
