"""The shared state of a running service, handed to routes as a FastAPI dependency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from pets_protocols.service.config import ServiceConfig
from pets_protocols.service.flight import BytesInFlight
from pets_protocols.service.schemas import ModelDescription
from pets_protocols.service.sessions import SessionStore
from pets_protocols.service.workers import WorkerPool

__all__ = ["Service", "ServiceState", "get_service"]


@dataclass
class ServiceState:
    """What every route may use: limits, the model's description, sessions, workers, the
    private folder where bodies are spooled and the bytes in flight there."""

    config: ServiceConfig
    description: ModelDescription
    input_size: int
    store: SessionStore
    pool: WorkerPool
    folder: Path
    flight: BytesInFlight
    running: int = 0


def get_service(request: Request) -> ServiceState:
    """The state the lifespan handler set up (a dependency, not a global)."""
    state: ServiceState = request.app.state.service
    return state


Service = Annotated[ServiceState, Depends(get_service)]
