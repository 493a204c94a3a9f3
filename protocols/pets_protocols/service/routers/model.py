"""``GET /model``: the model's public description (shapes and what keys must fit)."""

from __future__ import annotations

from fastapi import APIRouter

from pets_protocols.service.schemas import ModelDescription
from pets_protocols.service.state import Service

router = APIRouter(tags=["model"])


@router.get("/model", summary="The model's public description")
async def describe(service: Service) -> ModelDescription:
    """Input and output shapes, the requirements a client's keys must fit
    (``pets.Requirements.from_dict``) and this server's limits. Never the weights."""
    return service.description
