"""The FastAPI service: speech embeddings, language identification and discrete units from a
pretrained mHuBERT, over its own ``/v1`` routes and the Open Inference Protocol (``/v2``).

Run it with ``mhubert serve --model URI [--lid URI] [--index URI --units-layer L]``, or under any ASGI
server with the factory ``uvicorn --factory api.app:create_app`` / the module attribute ``api.app:app``
(built lazily from ``MHUBERT_*`` environment variables on first access).

The app is assembled here and nothing else: the routers (:mod:`api.routes_v1`, :mod:`api.oip`,
:mod:`api.routes_health`) reach the :class:`~api.service.ModelService` kept in ``app.state`` through
``Depends``; the lifespan loads the model and starts the micro-batcher, and on shutdown lets the
accepted requests finish and stops it (a second lifespan starts it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import torch
from fastapi import FastAPI

from api import oip, routes_health, routes_v1
from api.errors import install_error_handlers
from api.metrics import MetricsMiddleware
from api.service import ModelService
from api.settings import Settings

log = logging.getLogger(__name__)


async def _load(service: ModelService) -> None:
    """``service.load()`` in a daemon thread: a SIGTERM during a slow download does not wait for it."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            service.load()
        except Exception:  # noqa: BLE001 - kept in service.error, reported by readiness
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the app stopped meanwhile
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=run, name="mhubert-load", daemon=True).start()
    await done


class AdmissionMiddleware:
    """Pure ASGI: stamps each HTTP request at arrival (``ModelService.admit``), so draining refuses
    only requests that arrive after SIGTERM, not accepted ones still reading their body."""

    def __init__(self, app: Any, service: ModelService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.service.admit(scope)
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: ModelService = app.state.service
    service.draining = False
    service.batcher.start()
    loader = None
    if service.bundle is None:
        if service.settings.eager_load:
            await _load(service)
        else:
            loader = asyncio.create_task(_load(service))
    try:
        yield
    finally:
        if loader is not None and not loader.done():
            loader.cancel()
        service.start_draining()
        if not await service.batcher.drain(service.settings.drain_timeout_s):
            log.warning("requests still waiting after %.0f s of draining", service.settings.drain_timeout_s)
        await service.batcher.stop()


def create_app(settings: Settings | None = None, service: ModelService | None = None) -> FastAPI:
    """Build the app. ``service`` may be passed pre-loaded (tests); otherwise it loads at startup."""
    settings = settings or (service.settings if service else Settings.from_env())
    service = service or ModelService(settings)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    app = FastAPI(title="mhubert", version=settings.model_version, lifespan=lifespan,
                  description="Multilingual HuBERT speech embeddings, language identification and units.")
    app.state.service, app.state.metrics = service, service.metrics
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    app.add_middleware(AdmissionMiddleware, service=service)   # outermost: before a request is counted
    install_error_handlers(app)
    app.include_router(routes_v1.router)
    app.include_router(oip.router)
    app.include_router(routes_health.router)
    return app


_lazy_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``api.app:app`` for ``uvicorn``/``gunicorn``: built from the environment on first access."""
    global _lazy_app
    if name == "app":
        if _lazy_app is None:
            _lazy_app = create_app(Settings.from_env())
        return _lazy_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
