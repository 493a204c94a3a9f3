"""``POST /sessions/{id}/inferences``: ciphertext in, ciphertext out.

The body is a ``PrivateTensor.to_bytes()`` under the session's keys. Its header
(key fingerprint, shape, row count) is checked against the session and the model
before a worker parses a ciphertext; the worker runs the model and the answer is
the encrypted output, which only the client can decrypt.
"""

from __future__ import annotations

import logging
import time

import anyio
from fastapi import APIRouter, Request, Response

from pets_protocols.service import workers
from pets_protocols.service.payloads import inspect_tensor, spooled_body
from pets_protocols.service.routers.openapi import binary_answer, binary_body, errors
from pets_protocols.service.state import Service

router = APIRouter(prefix="/sessions", tags=["inferences"])
log = logging.getLogger("pets_protocols.service")


@router.post(
    "/{session_id}/inferences", summary="Run the model on ciphertexts",
    openapi_extra=binary_body("PrivateTensor.to_bytes(): (samples, features) encrypted "
                              "under this session's keys"),
    responses={**binary_answer("the encrypted output, PrivateTensor.to_bytes()"),
               **errors(400, 404, 408, 413, 422, 429, 500, 503)},
    response_class=Response,
)
async def infer(session_id: str, request: Request, service: Service) -> Response:
    config, description = service.config, service.description
    session = service.store.get(session_id)
    with service.store.using(session):
        async with spooled_body(request, folder=service.folder, flight=service.flight,
                                limit=config.max_request_bytes, deadline=config.body_timeout,
                                what="ciphertext request") as body:
            rows = await anyio.to_thread.run_sync(lambda: inspect_tensor(
                body, backend=description.backend, key_id=session.key_id,
                input_size=service.input_size, max_rows=config.max_rows))
            start = time.perf_counter()
            service.running += 1
            try:
                answer = await service.pool.run(workers.infer, session.id,
                                                str(session.key_path), str(body.path))
            finally:
                service.running -= 1
        session.inferences += 1
        session.bytes_in += body.size
        session.bytes_out += len(answer)
    log.info("session %s: inference on %d samples: %d bytes in (%.1f MiB), %d bytes out "
             "(%.1f MiB), %.3f s", session.id, rows, body.size, body.size / 2**20, len(answer),
             len(answer) / 2**20, time.perf_counter() - start)
    return Response(answer, media_type="application/octet-stream",
                    headers={"X-Pets-Samples": str(rows)})
