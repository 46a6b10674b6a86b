"""FastAPI dependencies: the service from ``app.state``, API-key and admin checks, one bundle snapshot."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.batching import NotReady
from api.bundle import Bundle
from api.errors import ApiError
from api.service import ADMITTED, ModelService
from api.settings import Settings

bearer = HTTPBearer(auto_error=False, description="API key (when the server has keys configured)")


def get_service(request: Request) -> ModelService:
    return request.app.state.service


def get_settings(request: Request) -> Settings:
    return request.app.state.service.settings


def _check(creds: HTTPAuthorizationCredentials | None, keys: list[str], what: str) -> None:
    given = creds.credentials if creds else ""
    if not given or not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise ApiError(401, "unauthorized", f"missing or invalid {what} (Authorization: Bearer KEY)",
                       {"WWW-Authenticate": "Bearer"})


def require_key(creds: HTTPAuthorizationCredentials | None = Depends(bearer),
                settings: Settings = Depends(get_settings)) -> None:
    """Inference and model listing need one of the API keys, when keys are configured."""
    if settings.api_keys:
        _check(creds, settings.api_keys, "API key")


def require_admin(creds: HTTPAuthorizationCredentials | None = Depends(bearer),
                  settings: Settings = Depends(get_settings)) -> None:
    if not settings.admin_key:
        raise ApiError(403, "forbidden", "model reload is disabled (no MHUBERT_ADMIN_KEY configured)")
    _check(creds, [settings.admin_key], "admin key")


def snapshot(request: Request, service: ModelService = Depends(get_service)) -> Bundle:
    """The bundle this request uses from its first check to its response (503 when not ready, or
    when it arrived after draining began)."""
    try:
        return service.snapshot(admitted=request.scope.get(ADMITTED, False))
    except NotReady as e:
        raise ApiError(503, "model_not_ready", str(e), {"Retry-After": "5"}) from e
