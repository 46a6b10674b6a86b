"""HTTP errors of the API: one JSON shape, ``{"error": {"code": ..., "message": ...}}``, for every failure.

Expected failures raise :class:`ApiError` (or ``mhubert.errors.BadInput``/``AudioError`` from the
library, answered with 422); request validation errors are reshaped; anything unexpected becomes a 500
with no traceback in the body (it goes to the server log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import schemas
from mhubert.errors import AudioError, BadInput

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status and code; rendered as ``{"error": {...}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every failure of the API uses."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": desc} for code, desc in {
        400: "malformed multipart body", 401: "missing or wrong API key",
        408: "request body not complete in time", 409: "no LID head / units index loaded",
        413: "audio too large or too long, or too many multipart parts",
        422: "bad parameters or undecodable/empty/too short/non-finite audio",
        429: "queue full (see Retry-After)", 503: "model not ready"}.items()
}


def install_error_handlers(app: FastAPI) -> None:
    """Render ApiError, BadInput/AudioError, validation, HTTP and unexpected errors as JSON."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AudioError)
    async def _audio_error(request: Request, exc: AudioError) -> JSONResponse:
        return error_response(422, "invalid_audio", str(exc))

    @app.exception_handler(BadInput)
    async def _bad_input(request: Request, exc: BadInput) -> JSONResponse:
        return error_response(422, "bad_input", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                      getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error",
                              f"internal error ({type(exc).__name__}); see the server log")
