"""Encrypted inference over HTTP: the server holds the model, the client the secret key.

::

    client (secret key)                           server (model; public keys only)
      GET  /model                          ->     shapes, requirements, limits
      POST /sessions   public key set      ->     checked (no secret key, fits the model)
                                           <-     {"session_id", ...}
      POST /sessions/{id}/inferences  ciphertext ->  run in a worker process
                                           <-     ciphertext
      DELETE /sessions/{id}                ->     keys deleted

``pets serve MODEL`` runs :func:`serve`; ``pets infer URL`` runs
:class:`InferenceClient`. The client learns the model's shapes and depth, not its
weights; the server learns public keys and ciphertexts, never a plaintext.

>>> from pets_protocols.service import InferenceClient, ServiceConfig
>>> ServiceConfig().max_rows
4096
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pets_protocols.service.client import InferenceClient, Traffic
from pets_protocols.service.config import ServiceConfig
from pets_protocols.service.models import ExportedModel, ModelSource

if TYPE_CHECKING:
    from pets_protocols.service.app import create_app
    from pets_protocols.service.server import serve

__all__ = ["ExportedModel", "InferenceClient", "ModelSource", "ServiceConfig", "Traffic",
           "create_app", "serve"]


def __getattr__(name: str) -> Any:  # the server side (FastAPI, uvicorn) loads when asked for
    if name == "create_app":
        from pets_protocols.service.app import create_app

        return create_app
    if name == "serve":
        from pets_protocols.service.server import serve

        return serve
    raise AttributeError(f"module 'pets_protocols.service' has no attribute {name!r}")
