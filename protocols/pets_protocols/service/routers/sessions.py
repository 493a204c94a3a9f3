"""``POST /sessions`` (upload a public key set) and ``DELETE /sessions/{id}``.

A key set is checked before it is stored: pets bytes, intact, keys of the
server's backend, no secret key (by its header, then by loading it in a worker),
parameters deep enough for the model and the rotation keys it needs (a trial run
on an encrypted zero). Only then is it written and the session created.
"""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request, Response

from pets_protocols.service import workers
from pets_protocols.service.payloads import inspect_keys, read_body
from pets_protocols.service.routers.openapi import binary_body, errors
from pets_protocols.service.schemas import SessionCreated
from pets_protocols.service.sessions import Session
from pets_protocols.service.state import Service

router = APIRouter(prefix="/sessions", tags=["sessions"])
log = logging.getLogger("pets_protocols.service")


@router.post(
    "", status_code=201, summary="Open a session with a public key set",
    openapi_extra=binary_body("backend.public().to_bytes(): a pets key set without the "
                              "secret key, made for GET /model's requirements"),
    responses=errors(400, 408, 413, 422, 500, 503),
)
async def open_session(request: Request, service: Service) -> SessionCreated:
    store, config = service.store, service.config
    session_id = store.reserve()  # refused at the cap before the body is read
    try:
        keys = await read_body(request, limit=config.max_key_bytes,
                               deadline=config.body_timeout, what="key set")
        header = await anyio.to_thread.run_sync(
            lambda: inspect_keys(keys, backend=service.description.backend))
        path = store.key_path(session_id)
        await service.pool.run(workers.open_session, session_id, str(path), keys)
        await anyio.to_thread.run_sync(path.write_bytes, keys)
    except BaseException:
        store.release(session_id)
        raise
    store.add(Session(session_id, header.key_id, path, len(keys), last_used=store.clock()))
    log.info("session %s opened: public key set %s, %d bytes (%.1f MiB); %d sessions",
             session_id, header.key_id, len(keys), len(keys) / 2**20, len(store))
    return SessionCreated(session_id=session_id, key_id=header.key_id, key_bytes=len(keys),
                          idle_timeout=config.idle_timeout)


@router.delete("/{session_id}", status_code=204, summary="Close a session, deleting its keys",
               responses=errors(404))
async def close_session(session_id: str, service: Service) -> Response:
    service.store.close(session_id)
    return Response(status_code=204)
