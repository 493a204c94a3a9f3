"""How the service answers errors: one table from pets error types to HTTP codes.

Every error answer has the JSON body ``{"error": "<pets error class>", "message": ...}``
so that the client raises the same pets error type. Client faults are 4xx, engine
failures 5xx. Where the status depends on the situation rather than on the error
type (a body too large, a session unknown, the server full), the route raises a
:class:`Refusal` that carries it.

>>> import pets
>>> from pets_protocols.service.errors import Refusal, classify
>>> classify(pets.ShapeMismatchError("x"))[0]
422
>>> classify(Refusal(413, pets.SerializationError("too big")))[0]
413
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pets.errors import (
    BackendError,
    MissingKeyError,
    ParameterError,
    PetsError,
    RequestRefusedError,
    SerializationError,
    ServiceUnavailableError,
    TensorError,
)

__all__ = ["Refusal", "classify", "error_name", "install_error_handlers"]

log = logging.getLogger("pets_protocols.service")

#: the first entry the error is an instance of gives the status
STATUS_BY_TYPE: tuple[tuple[type[PetsError], int], ...] = (
    (SerializationError, 400),  # malformed, truncated, forged or foreign bytes
    (TensorError, 422),  # shapes, value range, depth, layout, tensors under other keys
    (MissingKeyError, 422),  # a key set without the rotation keys the model needs
    (ParameterError, 422),  # keys whose parameters cannot run the model
    (RequestRefusedError, 400),  # a request this server does not take
    (ServiceUnavailableError, 503),  # the server is full
    (PetsError, 500),  # the engine, a worker or the server failed
)

#: statuses after which the connection is closed (the body may still be arriving)
_CLOSE_AFTER = {408, 413}


class Refusal(Exception):
    """A pets error answered with a given HTTP status (404, 408, 413, 429, 503)."""

    def __init__(self, status: int, error: PetsError) -> None:
        super().__init__(str(error))
        self.status = status
        self.error = error


def error_name(error: PetsError) -> str:
    """The name of the nearest class of :mod:`pets.errors` (what the client re-raises)."""
    for cls in type(error).__mro__:
        if cls.__module__ == "pets.errors":
            return cls.__name__
    return "PetsError"


def classify(exc: Exception) -> tuple[int, PetsError]:
    """The HTTP status and the pets error that answer ``exc``."""
    if isinstance(exc, Refusal):
        return exc.status, exc.error
    if isinstance(exc, PetsError):
        status = next(code for cls, code in STATUS_BY_TYPE if isinstance(exc, cls))
        return status, exc
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return 422, SerializationError(f"the request is malformed: {problems}")
    if isinstance(exc, HTTPException):
        return exc.status_code, RequestRefusedError(
            f"{exc.detail}; this is a pets encrypted-inference server (its API is at /docs)"
        )
    return 500, BackendError(
        f"the server failed ({type(exc).__name__}: {exc}); it keeps serving, see its log"
    )


async def answer_error(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: log, then answer with the status and the JSON body."""
    status, error = classify(exc)
    where = f"{request.method} {request.url.path}"
    if status >= 500:
        log.error("%s -> %d %s: %s", where, status, type(error).__name__, error,
                  exc_info=exc if not isinstance(exc, (PetsError, Refusal)) else None)
    else:
        log.warning("%s -> %d %s: %s", where, status, error_name(error), error)
    headers = {"Connection": "close"} if status in _CLOSE_AFTER else None
    return JSONResponse({"error": error_name(error), "message": str(error)},
                        status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the service can meet through :func:`answer_error`."""
    for kind in (Refusal, PetsError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, answer_error)

