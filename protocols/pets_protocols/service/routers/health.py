"""``GET /health``: liveness and load (answered from the event loop, never queued)."""

from __future__ import annotations

from fastapi import APIRouter

from pets_protocols.service.schemas import Health
from pets_protocols.service.state import Service

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and load")
async def health(service: Service) -> Health:
    return Health(sessions=len(service.store), inferences_running=service.running,
                  workers=service.config.workers, bytes_in_flight=service.flight.in_flight)
