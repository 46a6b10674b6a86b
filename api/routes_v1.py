"""The ``/v1`` routes: embeddings, language identification, discrete units, models and reload.

Each inference route follows the service's stages with ONE bundle snapshot (``Depends(snapshot)``):
check the parameters against it, ``preprocess`` (read + decode), ``predict`` (micro-batched job that
carries the bundle), ``postprocess``. Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response

from api import schemas
from api.batching import NotReady, QueueFull
from api.bundle import Bundle
from api.deps import get_service, require_admin, require_key, snapshot
from api.errors import ERROR_RESPONSES, ApiError
from api.intake import AUDIO_BODY, read_body
from api.service import Job, ModelService, normalize_vectors
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")
INFERENCE = [Depends(require_key)]


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


async def predict(service: ModelService, job: Job) -> Any:
    """``service.predict`` with the batcher's refusals as HTTP errors (429, 503)."""
    try:
        return await service.predict(job)
    except QueueFull as e:
        raise ApiError(429, "overloaded", f"server is overloaded: {e}", {"Retry-After": "1"}) from e
    except NotReady as e:
        raise ApiError(503, "model_not_ready", str(e), {"Retry-After": "5"}) from e


async def read_audio(request: Request, service: ModelService, bundle: Bundle):
    """preprocess: the request's audio as (S,) float32 at 16 kHz, checked."""
    data = await read_body(request, service.settings)
    return await service.preprocess(data, bundle)


@router.post("/embeddings", response_model=schemas.EmbeddingResponse, dependencies=INFERENCE,
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
    service: ModelService = Depends(get_service),
    bundle: Bundle = Depends(snapshot),
) -> Any:
    """Utterance (mean) or frame-level embeddings of the chosen layers (at the model's frame rate)."""
    layers = parse_layers(layer, bundle.num_layers)
    wav = await read_audio(request, service, bundle)
    x = await predict(service, Job(bundle, wav, "embed", layers, pool=pooling == "mean"))
    with service.timed("postprocess"):
        if normalize:
            x = normalize_vectors(x)
        num_frames = bundle.num_frames(wav.numel())
        accept = request.headers.get("accept", "")
        if format == "npy" or (format is None and "application/x-npy" in accept):
            buf = io.BytesIO()
            np.save(buf, x.numpy().astype(np.float32), allow_pickle=False)
            return Response(buf.getvalue(), media_type="application/x-npy", headers={
                "X-Mhubert-Layers": ",".join(map(str, layers)),
                "X-Mhubert-Frame-Rate": f"{bundle.frame_rate:g}",
                "X-Mhubert-Num-Frames": str(num_frames), "X-Mhubert-Pooling": pooling})
        return schemas.EmbeddingResponse(
            model=service.settings.model_name, layers=list(layers), pooling=pooling, normalized=normalize,
            dim=int(x.shape[-1]), duration_s=wav.numel() / SAMPLE_RATE, frame_rate=bundle.frame_rate,
            num_frames=num_frames, embeddings=x.tolist())


@router.post("/lid", response_model=schemas.LidResponse, dependencies=INFERENCE,
             responses=ERROR_RESPONSES, openapi_extra=AUDIO_BODY, tags=["inference"])
async def lid(
    request: Request,
    top_k: Annotated[int | None, Query(ge=1, le=1000, description="languages to return")] = None,
    service: ModelService = Depends(get_service),
    bundle: Bundle = Depends(snapshot),
) -> schemas.LidResponse:
    """Top-k spoken languages with probabilities (needs a LID head)."""
    if bundle.head is None:
        raise ApiError(409, "lid_not_loaded",
                       "no LID head is loaded: start the server with --lid URI (MHUBERT_LID_URI)")
    wav = await read_audio(request, service, bundle)
    probs = await predict(service, Job(bundle, wav, "lid"))
    top = service.postprocess_lid(bundle, probs, top_k or service.settings.lid_top_k)
    return schemas.LidResponse(model=service.settings.model_name, duration_s=wav.numel() / SAMPLE_RATE,
                               languages=[schemas.LanguageScore(language=k, probability=p) for k, p in top])


@router.post("/units", response_model=schemas.UnitsResponse, dependencies=INFERENCE,
             responses={**ERROR_RESPONSES, 200: {"content": {"text/plain": {}}}},
             openapi_extra=AUDIO_BODY, tags=["inference"])
async def units(
    request: Request,
    dedup: Annotated[bool, Query(description="collapse repeated units; durations in frames")] = False,
    format: Annotated[Literal["json", "fairseq"], Query(
        description="json, or fairseq: one line of space-separated ids")] = "json",
    service: ModelService = Depends(get_service),
    bundle: Bundle = Depends(snapshot),
) -> Any:
    """Discrete units: the index's layer of the model -> the index's labels at the model frame rate."""
    if bundle.units is None:
        raise ApiError(409, "units_not_loaded",
                       "no units index is loaded: start the server with --index URI --units-layer L")
    wav = await read_audio(request, service, bundle)
    ids = await predict(service, Job(bundle, wav, "units"))
    out = service.postprocess_units(ids, dedup)
    if format == "fairseq":
        return PlainTextResponse(" ".join(map(str, out.ids)) + "\n")
    u = bundle.units
    return schemas.UnitsResponse(
        model=service.settings.model_name, layer=u.layer, num_units=u.num_clusters,
        frame_rate=SAMPLE_RATE / u.model.cfg.total_stride, duration_s=wav.numel() / SAMPLE_RATE,
        dedup=dedup, units=out.ids, durations=out.durations)


def model_info(service: ModelService) -> schemas.ModelInfo:
    s, b = service.settings, service.bundle
    return schemas.ModelInfo(
        name=s.model_name, version=s.model_version, ready=service.ready, state=service.state,
        parameters=b.parameters if b else None, layers=b.num_layers if b else None,
        dim=b.dim if b else None, frame_rate=b.frame_rate if b else None, sample_rate=SAMPLE_RATE,
        lid_languages=list(b.labels) if b else [], source=b.source if b else s.model_uri,
        lid_source=b.lid_source if b else s.lid_uri, backend=s.backend,
        units_source=b.units.source if b and b.units else "",
        units_layer=b.units.layer if b and b.units else None,
        num_units=b.units.num_clusters if b and b.units else None)


@router.get("/models", response_model=schemas.ModelList, dependencies=[Depends(require_key)],
            responses={401: ERROR_RESPONSES[401]}, tags=["models"])
async def list_models(service: ModelService = Depends(get_service)) -> schemas.ModelList:
    """The served model: name, version, size, layers, LID languages, units index and source URI."""
    return schemas.ModelList(models=[model_info(service)])


@router.post("/models/reload", response_model=schemas.ModelInfo, dependencies=[Depends(require_admin)],
             responses={401: ERROR_RESPONSES[401], 403: {"model": schemas.ErrorResponse}}, tags=["models"])
async def reload_models(service: ModelService = Depends(get_service)) -> schemas.ModelInfo:
    """Reload the configured model, LID head and index (URIs come from configuration, never the client)."""
    try:
        await asyncio.to_thread(service.reload)
    except Exception as e:  # noqa: BLE001 - the old model keeps serving; say why the new one failed
        log.exception("reload failed")
        raise ApiError(503, "reload_failed", f"reload failed, still serving the previous model: "
                                             f"{type(e).__name__}: {e}") from e
    return model_info(service)
