"""Health (KServe V2 style: live, ready) and ``/metrics``; none of them needs an API key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import schemas
from api.deps import get_service
from api.service import ModelService

router = APIRouter()


@router.get("/v2/health/live", response_model=schemas.Health, tags=["health"])
async def live() -> schemas.Health:
    return schemas.Health(status="alive")


@router.get("/v2/health/ready", response_model=schemas.Health, tags=["health"],
            responses={503: {"model": schemas.Health}})
async def ready(service: ModelService = Depends(get_service)) -> Any:
    if service.ready:
        return schemas.Health(status="ready")
    detail = "shutting down" if service.draining else (service.error or service.state)
    body = schemas.Health(status="not ready", detail=detail)
    return JSONResponse(body.model_dump(), status_code=503)


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
