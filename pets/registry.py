"""The backend registry: names to classes, filled by ``register_backend`` and entry points.

A backend's engine (TenSEAL, CrypTen) is imported only when that backend is asked
for, so ``import pets`` stays light and a missing engine is reported only to the
user who needs it.

>>> import pets
>>> {"plain", "ckks", "mpc", "hybrid"} <= set(pets.available_backends())
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from pets.errors import BackendNotInstalledError, SerializationError, UnknownBackendError

if TYPE_CHECKING:
    from pets.backends.base import Backend, RequirementsExtension

__all__ = [
    "available_backends", "backend", "backend_class", "load_backend", "register_backend",
    "requirements_extension",
]

# name -> "module:attribute"; the module is imported on first use.
_LAZY: dict[str, tuple[str, str, str]] = {
    # name: (module, class name, what to install)
    "plain": ("pets.backends.plain", "PlainBackend", "pets"),
    "ckks": ("pets.backends.ckks", "CKKSBackend", "pets[he]  (tenseal==0.3.18)"),
    "mpc": ("pets.backends.mpc", "MPCBackend",
            "pets[mpc] and then: pip install --no-deps crypten==0.4.1  (make setup does both)"),
    "hybrid": ("pets.backends.hybrid", "HybridBackend",
               "pets[he,mpc] and then: pip install --no-deps crypten==0.4.1  (make setup)"),
}
_LOADED: dict[str, type[Backend]] = {}


@overload
def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]: ...


@overload
def register_backend(name: str, cls: type[Backend]) -> type[Backend]: ...


def register_backend(
    name: str, cls: type[Backend] | None = None
) -> type[Backend] | Callable[[type[Backend]], type[Backend]]:
    """Make ``cls`` available as ``pets.backend(name)``; without ``cls``, a class decorator.

    ``pets.register_backend("mine", MyBackend)`` and ``@pets.register_backend("mine")``
    above the class do the same. A package can also register backends without being
    imported first: an entry point in the group ``pets.backends``
    (``mine = "my_package.backend:MyBackend"``), found on first use (see docs/backends.md).
    """

    def decorate(found: type[Backend]) -> type[Backend]:
        found.name = name
        _LOADED[name] = found
        return found

    return decorate if cls is None else decorate(cls)


def register_lazy_backend(name: str, module: str, attribute: str, install: str) -> None:
    """Register a backend whose module is imported only when it is first asked for."""
    _LAZY[name] = (module, attribute, install)


#: the entry-point group a package registers its backends in (``name = "module:Class"``)
ENTRY_POINT_GROUP = "pets.backends"
_DISCOVERED = False


def _discover() -> None:
    """Add the backends installed packages declare in :data:`ENTRY_POINT_GROUP` (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        module, _, attribute = point.value.partition(":")
        owner = point.dist.name if point.dist is not None else module.split(".")[0]
        _LAZY.setdefault(point.name, (module, attribute, owner))


def available_backends() -> list[str]:
    """Names that :func:`backend` accepts, whether or not their engine is installed."""
    _discover()
    return sorted(set(_LAZY) | set(_LOADED))


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``, importing its module on first use."""
    if name in _LOADED:
        return _LOADED[name]
    _discover()
    if name not in _LAZY:
        raise UnknownBackendError(
            f"unknown backend {name!r}; registered backends: {', '.join(available_backends())}"
        )
    module, attribute, install = _LAZY[name]
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"backend {name!r} needs an engine that is not installed ({exc.name or exc}); "
            f"install it with: pip install {install}"
        ) from exc
    cls: type[Backend] = getattr(loaded, attribute)
    _LOADED.setdefault(name, cls)
    return cls


def backend(name: str, **options: Any) -> Backend:
    """Create a backend by name: ``"plain"``, ``"ckks"`` or ``"mpc"``.

    Options are passed to the backend as keywords; each backend documents its own.

    >>> be = backend("plain")
    >>> be.decrypt(be.encrypt([1.0, 2.0]) * 2).tolist()
    [2.0, 4.0]
    """
    return backend_class(name)(**options)


#: kind -> (module, class) of the requirements extensions the library ships
_EXTENSIONS: dict[str, tuple[str, str]] = {
    "levelled": ("pets.backends.levelled", "LevelledRequirements"),
}


def requirements_extension(kind: str) -> type[RequirementsExtension]:
    """The :class:`~pets.backends.base.RequirementsExtension` subclass named ``kind``: one the
    library ships, or one a loaded backend's module defined (found among the subclasses)."""
    from pets.backends.base import RequirementsExtension

    if kind in _EXTENSIONS:
        module, attribute = _EXTENSIONS[kind]
        found: type[RequirementsExtension] = getattr(importlib.import_module(module), attribute)
        return found
    pending = list(RequirementsExtension.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.kind == kind:
            return cls
        pending += cls.__subclasses__()
    raise SerializationError(
        f"requirements name an unknown extension {kind!r}; create the backend the model was "
        "compiled for (its module defines the extension) before reading them"
    )


def load_backend(data: bytes, *, key: bytes | None = None) -> Backend:
    """Load a backend serialised with :meth:`Backend.to_bytes` (its class from the bytes' label).

    >>> import pets
    >>> be = pets.backend("plain")
    >>> pets.load_backend(be.to_bytes()).key_id == be.key_id
    True
    """
    from pets.serialization import unpack

    envelope = unpack(data, kind="backend", key=key)
    return backend_class(envelope.backend)._load_keys(
        envelope.key_id, envelope.meta, envelope.blobs
    )
