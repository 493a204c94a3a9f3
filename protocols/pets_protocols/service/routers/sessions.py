"""``POST /sessions`` (upload a public key set) and ``DELETE /sessions/{id}``.

A key set is spooled to disk as it arrives, then checked before it is kept: pets
bytes, keys of the server's backend, no secret key (by its header, then by
loading it in a worker, which also checks it is intact), parameters deep enough
for the model and the rotation keys it needs (a trial run on an encrypted zero).
A session slot is taken only once the key set has arrived and its header passed,
so a slow upload holds none; the session is created when the worker accepts it.
"""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request, Response

from pets_protocols.service import workers
from pets_protocols.service.payloads import client_of, inspect_keys, spooled_body
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
    responses=errors(400, 408, 413, 422, 429, 500, 503),
)
async def open_session(request: Request, service: Service) -> SessionCreated:
    store, config = service.store, service.config
    client = client_of(request)
    store.check_room(client)  # a full server refuses before the body is read
    async with spooled_body(request, folder=service.folder, flight=service.flight,
                            limit=config.max_key_bytes, deadline=config.body_timeout,
                            what="key set") as body:
        header = await anyio.to_thread.run_sync(
            lambda: inspect_keys(body, backend=service.description.backend))
        session_id = store.reserve(client)  # only now, with the keys here and checked
        path = store.key_path(session_id)
        try:
            await service.pool.run(workers.open_session, session_id, str(path), str(body.path))
            body.path.rename(path)
        except BaseException:
            store.release(session_id)
            raise
    store.add(Session(session_id, header.key_id, path, body.size, last_used=store.clock(),
                      client=client))
    log.info("session %s opened for %s: public key set %s, %d bytes (%.1f MiB); %d sessions",
             session_id, client, header.key_id, body.size, body.size / 2**20, len(store))
    return SessionCreated(session_id=session_id, key_id=header.key_id, key_bytes=body.size,
                          idle_timeout=config.idle_timeout)


@router.delete("/{session_id}", status_code=204, summary="Close a session, deleting its keys",
               responses=errors(404))
async def close_session(session_id: str, service: Service) -> Response:
    service.store.close(session_id)
    return Response(status_code=204)
