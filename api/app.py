"""The FastAPI service: speech embeddings and language identification from a pretrained mHuBERT.

Run it with ``mhubert serve --model URI [--lid URI]``, or under any ASGI server with the factory
``uvicorn --factory api.app:create_app`` / the module attribute ``api.app:app`` (built lazily from
``MHUBERT_*`` environment variables on first access).

Routes: ``POST /v1/embeddings``, ``POST /v1/lid``, ``GET /v1/models``, ``POST /v1/models/reload``
(admin key), KServe V2 health (``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}/ready``), ``GET /metrics`` and OpenAPI at ``/docs``. Every error is JSON
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from api import schemas
from api.batching import MicroBatcher, NotReady, QueueFull
from api.errors import ERROR_RESPONSES, ApiError, install_error_handlers
from api.intake import AUDIO_BODY, SAMPLE_RATE, decode_audio, read_body
from api.metrics import Metrics, MetricsMiddleware
from api.models import EmbedJob, ModelService, normalize_vectors
from api.settings import Settings
from mhubert.errors import BadInput

log = logging.getLogger(__name__)


_bearer = HTTPBearer(auto_error=False, description="API key (when the server has keys configured)")


def parse_layers(spec: list[str] | None, num_layers: int) -> tuple[int, ...]:
    """``None`` -> last layer; ``"6"``, ``"6,9"``, repeated values, ``-1`` (from the top), ``all``."""
    items = [p.strip() for s in (spec or []) for p in s.split(",") if p.strip()]
    if not items:
        return (num_layers,)
    if items == ["all"]:
        return tuple(range(num_layers + 1))
    out: list[int] = []
    for p in items:
        try:
            k = int(p)
        except ValueError:
            raise BadInput(f"layer must be an integer, a comma-separated list or 'all', got {p!r}") from None
        if k < 0:
            k += num_layers + 1
        if not 0 <= k <= num_layers:
            raise BadInput(f"layer {p} is out of range: the model has hidden states 0..{num_layers}")
        if k not in out:
            out.append(k)
    return tuple(out)


def create_app(settings: Settings | None = None, service: ModelService | None = None) -> FastAPI:
    """Build the app. ``service`` may be passed pre-loaded (tests); otherwise it loads at startup."""
    settings = settings or Settings.from_env()
    service = service or ModelService(settings)
    metrics = Metrics(settings.model_name, settings.model_version)
    batcher = MicroBatcher(service.run_batch, settings.max_batch_size, settings.max_wait_ms,
                           int(settings.max_batch_audio_s * SAMPLE_RATE), settings.max_queue, metrics)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)

    async def _load() -> None:
        try:
            await asyncio.to_thread(service.load)
        except Exception:  # noqa: BLE001 - kept in service.error, reported by readiness
            pass
        metrics.model(metrics.ready).set(1.0 if service.ready else 0.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        loader = None
        if not service.ready:
            if settings.eager_load:
                await _load()
            else:
                loader = asyncio.create_task(_load())
        metrics.model(metrics.ready).set(1.0 if service.ready else 0.0)
        yield
        if loader is not None and not loader.done():
            loader.cancel()
        await batcher.stop()

    app = FastAPI(title="mhubert", version=settings.model_version, lifespan=lifespan,
                  description="Multilingual HuBERT speech embeddings and language identification.")
    app.state.settings, app.state.service, app.state.batcher, app.state.metrics = (
        settings, service, batcher, metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)

    def _check(creds: HTTPAuthorizationCredentials | None, keys: list[str], what: str) -> None:
        given = creds.credentials if creds else ""
        if not given or not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            raise ApiError(401, "unauthorized", f"missing or invalid {what} (Authorization: Bearer KEY)",
                           {"WWW-Authenticate": "Bearer"})

    def require_key(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if settings.api_keys:
            _check(creds, settings.api_keys, "API key")

    def require_admin(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if not settings.admin_key:
            raise ApiError(403, "forbidden", "model reload is disabled (no MHUBERT_ADMIN_KEY configured)")
        _check(creds, [settings.admin_key], "admin key")

    def require_ready() -> None:
        if not service.ready:
            detail = f": {service.error}" if service.error else ""
            raise ApiError(503, "model_not_ready", f"model is {service.state}{detail}",
                           {"Retry-After": "5"})

    async def read_audio(request: Request) -> tuple[torch.Tensor, float]:
        """The request's audio as (samples,) float32 16 kHz mono, and its duration in seconds."""
        t0 = time.perf_counter()
        data = await read_body(request, settings.max_body_bytes)
        wav = await run_in_threadpool(decode_audio, data, settings, service.min_samples)
        metrics.model(metrics.preprocess).observe(time.perf_counter() - t0)
        return wav, wav.numel() / SAMPLE_RATE

    async def infer(job: EmbedJob) -> torch.Tensor:
        try:
            result = await batcher.submit(job, job.wav.numel())
        except QueueFull as e:
            raise ApiError(429, "overloaded", f"server is overloaded: {e}", {"Retry-After": "1"}) from e
        except NotReady as e:
            raise ApiError(503, "model_not_ready", str(e), {"Retry-After": "5"}) from e
        metrics.model(metrics.audio_seconds).inc(job.wav.numel() / SAMPLE_RATE)
        return result

    inference_deps = [Depends(require_key), Depends(require_ready)]

    @app.post("/v1/embeddings", response_model=schemas.EmbeddingResponse, dependencies=inference_deps,
              responses={**ERROR_RESPONSES, 200: {"content": {"application/x-npy": {}}}},
              openapi_extra=AUDIO_BODY, tags=["inference"])
    async def embeddings(
        request: Request,
        layer: Annotated[list[str] | None, Query(
            description="hidden-state index: int, comma-separated list, repeated, negative from the top, "
                        "or 'all'; default the last layer")] = None,
        pooling: Annotated[Literal["mean", "none"], Query(description="mean over frames or none")] = "mean",
        normalize: Annotated[bool, Query(description="L2-normalise each vector")] = False,
        format: Annotated[Literal["json", "npy"] | None, Query(
            description="npy: binary float32 array (also via Accept: application/x-npy)")] = None,
    ) -> Any:
        """Utterance (mean) or frame-level (50 Hz) embeddings of the chosen layers."""
        bundle = service.bundle
        layers = parse_layers(layer, bundle.num_layers)
        wav, duration = await read_audio(request)
        x = await infer(EmbedJob(wav=wav, layers=layers, pool=pooling == "mean"))
        if normalize:
            x = normalize_vectors(x)
        num_frames = int(bundle.model.num_frames(wav.numel()))
        accept = request.headers.get("accept", "")
        if format == "npy" or (format is None and "application/x-npy" in accept):
            buf = io.BytesIO()
            np.save(buf, x.numpy().astype(np.float32), allow_pickle=False)
            return Response(buf.getvalue(), media_type="application/x-npy", headers={
                "X-Mhubert-Layers": ",".join(map(str, layers)), "X-Mhubert-Frame-Rate": "50",
                "X-Mhubert-Num-Frames": str(num_frames), "X-Mhubert-Pooling": pooling})
        return schemas.EmbeddingResponse(
            model=settings.model_name, layers=list(layers), pooling=pooling, normalized=normalize,
            dim=int(x.shape[-1]), duration_s=duration, frame_rate=ModelService.FRAME_RATE,
            num_frames=num_frames, embeddings=x.tolist())

    @app.post("/v1/lid", response_model=schemas.LidResponse, dependencies=inference_deps,
              responses=ERROR_RESPONSES, openapi_extra=AUDIO_BODY, tags=["inference"])
    async def lid(
        request: Request,
        top_k: Annotated[int | None, Query(ge=1, le=1000, description="languages to return")] = None,
    ) -> schemas.LidResponse:
        """Top-k spoken languages with probabilities (needs a LID head)."""
        bundle = service.bundle
        if bundle.head is None:
            raise ApiError(409, "lid_not_loaded",
                           "no LID head is loaded: start the server with --lid URI (MHUBERT_LID_URI)")
        wav, duration = await read_audio(request)
        probs = await infer(EmbedJob(wav=wav, lid=True))
        k = min(top_k or settings.lid_top_k, probs.numel())
        p, idx = torch.topk(probs, k)
        return schemas.LidResponse(model=settings.model_name, duration_s=duration, languages=[
            schemas.LanguageScore(language=bundle.labels[i], probability=float(v))
            for v, i in zip(p.tolist(), idx.tolist(), strict=True)])

    def model_info() -> schemas.ModelInfo:
        b = service.bundle
        return schemas.ModelInfo(
            name=settings.model_name, version=settings.model_version, ready=service.ready,
            state=service.state, parameters=b.parameters if b else None, layers=b.num_layers if b else None,
            dim=b.dim if b else None, lid_languages=b.labels if b else [], source=settings.model_uri,
            lid_source=settings.lid_uri)

    @app.get("/v1/models", response_model=schemas.ModelList, dependencies=[Depends(require_key)],
             responses={401: ERROR_RESPONSES[401]}, tags=["models"])
    async def list_models() -> schemas.ModelList:
        """The served model: name, version, size, layers, LID languages and source URI."""
        return schemas.ModelList(models=[model_info()])

    @app.post("/v1/models/reload", response_model=schemas.ModelInfo, dependencies=[Depends(require_admin)],
              responses={401: ERROR_RESPONSES[401], 403: {"model": schemas.ErrorResponse}}, tags=["models"])
    async def reload_models() -> schemas.ModelInfo:
        """Reload the configured model and LID head (URIs come from configuration, never the client)."""
        try:
            await asyncio.to_thread(service.reload)
        except Exception as e:  # noqa: BLE001 - the old model keeps serving; say why the new one failed
            log.exception("reload failed")
            raise ApiError(503, "reload_failed", f"reload failed, still serving the previous model: "
                                                 f"{type(e).__name__}: {e}") from e
        metrics.model(metrics.ready).set(1.0)
        return model_info()

    @app.get("/v2/health/live", response_model=schemas.Health, tags=["health"])
    async def live() -> schemas.Health:
        return schemas.Health(status="alive")

    @app.get("/v2/health/ready", response_model=schemas.Health, tags=["health"],
             responses={503: {"model": schemas.Health}})
    async def ready() -> Any:
        if service.ready:
            return schemas.Health(status="ready")
        body = schemas.Health(status="not ready", detail=service.error or service.state)
        return JSONResponse(body.model_dump(), status_code=503)

    @app.get("/v2/models/{name}/ready", response_model=schemas.ModelReady, tags=["health"],
             responses={404: {"model": schemas.ErrorResponse}, 503: {"model": schemas.ModelReady}})
    async def model_ready(name: str) -> Any:
        if name != settings.model_name:
            raise ApiError(404, "model_not_found", f"unknown model {name!r}; this server serves "
                                                   f"{settings.model_name!r}")
        body = schemas.ModelReady(name=name, ready=service.ready)
        return body if service.ready else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

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
