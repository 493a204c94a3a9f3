"""OpenAPI fragments for the binary bodies (read by the routes themselves, as streams)."""

from __future__ import annotations

from typing import Any

from pets_protocols.service.schemas import ErrorAnswer

__all__ = ["binary_body", "binary_answer", "errors"]

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def binary_body(what: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is pets bytes."""
    return {"requestBody": {"required": True, "description": what, "content": _BINARY}}


def binary_answer(what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": what, "content": _BINARY}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route may give, each an :class:`ErrorAnswer`."""
    reasons = {
        400: "malformed, truncated, forged or foreign bytes (SerializationError), or a "
             "request this server does not take (RequestRefusedError)",
        404: "no such session: closed, expired or never opened (MissingKeyError)",
        408: "the body did not arrive in time (RequestRefusedError)",
        413: "the body is over the server's limit (SerializationError)",
        422: "bytes that do not fit the model or the session (a pets TensorError, "
             "KeyMismatchError, MissingKeyError or ParameterError)",
        429: "this session is already running an inference, or this client holds its "
             "most sessions or bytes in flight (RequestRefusedError)",
        500: "the engine or a worker failed; the server keeps serving (BackendError, "
             "WorkerError)",
        503: "the server holds its maximum of sessions or bytes in flight "
             "(ServiceUnavailableError)",
    }
    return {s: {"description": reasons[s], "model": ErrorAnswer} for s in statuses}
