"""The FastAPI application: routers per resource, state by dependency, one error handler.

Start-up work (the worker processes, the private folder for session keys, the
idle-session sweeper) runs in the lifespan handler; the model's description is
made before, when the application is created, so a bad model file fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
from fastapi import FastAPI

import pets
from pets_protocols.service.config import ServiceConfig
from pets_protocols.service.errors import install_error_handlers
from pets_protocols.service.flight import BytesInFlight
from pets_protocols.service.models import ExportedModel, ModelSource
from pets_protocols.service.routers import health, inferences, model, sessions
from pets_protocols.service.schemas import InputRange, Limits, ModelDescription
from pets_protocols.service.sessions import SessionStore
from pets_protocols.service.state import ServiceState
from pets_protocols.service.workers import WorkerPool

__all__ = ["announce_calibration", "create_app", "describe_model"]

log = logging.getLogger("pets_protocols.service")

BACKEND = "ckks"


def describe_model(source: ModelSource, config: ServiceConfig) -> ModelDescription:
    """What a client learns: shapes, the requirements its keys must fit, the limits.

    The model is compiled for the backend clients use (the requirements are that
    backend's: depth, products, packing); the key this makes is thrown away.
    """
    reference = source.open()(pets.backend(BACKEND))
    requirements = reference.requirements.to_dict()
    if isinstance(source, ExportedModel) and source.example is None:
        announce_calibration(source, InputRange.model_validate(requirements).bound)
    return ModelDescription(
        backend=BACKEND,
        input_shape=list(reference.input_shape),
        output_shape=list(reference.output_shape),
        requirements=requirements,
        limits=Limits(max_rows=config.max_rows, max_request_bytes=config.max_request_bytes,
                      max_key_bytes=config.max_key_bytes, idle_timeout=config.idle_timeout,
                      max_sessions=config.max_sessions,
                      max_sessions_per_client=config.max_sessions_per_client,
                      max_connections_per_client=config.max_connections_per_client),
    )


def announce_calibration(source: ExportedModel, bound: float | None) -> None:
    """Say at start-up that the input range comes from the few rows saved in the file."""
    if bound is None:
        return
    log.warning(
        "%s: input range calibrated on the %d example rows saved in the file: this server "
        "accepts inputs with |x| <= %.3g and clients are refused beyond; to widen it, restart "
        "with --example typical_inputs.npy (a numpy.save of inputs covering the range)",
        source.name or source.path, source.saved_rows(), bound)


def create_app(source: ModelSource, config: ServiceConfig | None = None, *,
               on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The service for ``source``; ``on_ready`` runs once the workers are up."""
    config = config or ServiceConfig()
    description = describe_model(source, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        folder = Path(tempfile.mkdtemp(prefix="pets-sessions-"))  # mode 0700
        pool = WorkerPool(source, workers=config.workers, cache_size=config.worker_cache)
        store = SessionStore(folder, max_sessions=config.max_sessions,
                             max_per_client=config.max_sessions_per_client,
                             idle_timeout=config.idle_timeout)
        flight = BytesInFlight(total=config.max_bytes_in_flight,
                               per_client=config.max_bytes_in_flight_per_client)
        try:
            await pool.start()
            app.state.service = ServiceState(
                config, description, int(np.prod(description.input_shape)), store, pool,
                folder, flight)
            sweeper = asyncio.create_task(_sweep(store, config.idle_timeout))
            if on_ready is not None:
                on_ready()
            yield
            sweeper.cancel()
        finally:
            store.close_all()
            await asyncio.to_thread(pool.shutdown)
            shutil.rmtree(folder, ignore_errors=True)

    app = FastAPI(
        title="pets encrypted inference",
        version="1",
        summary="Runs a model on CKKS ciphertexts; the secret key never leaves the client.",
        description=(
            "1. `GET /model`: the model's shapes and the requirements keys must fit. "
            "2. `POST /sessions` with `backend.public().to_bytes()`. "
            "3. `POST /sessions/{id}/inferences` with `PrivateTensor.to_bytes()`: the answer "
            "is the encrypted output. 4. `DELETE /sessions/{id}`. Errors are "
            '`{"error": "<pets error class>", "message": ...}`.'
        ),
        lifespan=lifespan,
    )
    for router in (health.router, model.router, sessions.router, inferences.router):
        app.include_router(router)
    install_error_handlers(app)
    return app


async def _sweep(store: SessionStore, idle_timeout: float) -> None:
    """Close idle sessions even when no request comes to trigger it."""
    while True:
        await asyncio.sleep(min(max(idle_timeout / 4, 0.5), 30.0))
        store.expire_idle()
