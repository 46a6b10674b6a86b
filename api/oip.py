"""Open Inference Protocol v2 (KServe V2 / Triton HTTP) beside the ``/v1`` routes, on the same
service: the same micro-batcher, body and audio limits, API keys and metrics.

Models, for a server whose model is ``{name}`` (what ``/v1/models`` reports):

- ``{name}``: input ``WAVEFORM`` FP32 ``[-1]`` (16 kHz mono) or ``AUDIO`` BYTES ``[1]`` (an encoded file,
  binary tensor data or base64 in JSON); parameters ``layer`` (int, default the last), ``pooling``
  (``mean`` | ``none``); output ``EMBEDDING`` FP32 ``[D]`` or ``[T, D]``.
- ``{name}-lid`` (with a LID head): parameter ``top_k``; outputs ``LANGUAGE`` BYTES ``[k]``,
  ``PROBABILITY`` FP32 ``[k]``.
- ``{name}-units`` (with a units index): parameter ``dedup``; outputs ``UNITS`` INT32 ``[T]`` and, with
  dedup, ``DURATIONS`` INT32 ``[T]``.

Errors are the protocol's ``{"error": "message"}`` with a 4xx (503 while not ready).

Hand-written rather than built on the ``kserve`` package's ``ModelServer`` (checked against KServe
0.15/0.16's Python runtime docs): ``ModelServer.start()`` owns the process (its own FastAPI app, uvicorn
workers, gRPC server, health routes and Prometheus registry), so our ``/v1`` routes, error shape,
lifespan-managed micro-batcher and metrics would have to be grafted into its app, and the package pins
its own fastapi/uvicorn/pydantic/grpc ranges; KServe's request batching is a separate agent container,
not in-process. The HTTP/REST part of the protocol is five routes and one binary codec
(:mod:`api.oip_codec`), tested against the reference client, ``tritonclient[http]``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from api import schemas
from api.batching import NotReady, QueueFull
from api.bundle import Bundle
from api.deps import get_service, require_key
from api.errors import ApiError
from api.intake import read_raw
from api.oip_codec import HEADER, InferRequest, OipError, encode_response, parse_request
from api.service import ADMITTED, Job, ModelService
from mhubert import __version__
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import AudioError, BadInput

VERSION = "2"
EXTENSIONS = ["binary_tensor_data", "model_repository", "health"]


class OipRoute(APIRoute):
    """Every failure of an OIP route, its dependencies included, as ``{"error": "message"}``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except OipError as e:
                return _error(e.status, e.message, e.headers)
            except ApiError as e:
                return _error(e.status, e.message, e.headers)
            except AudioError as e:
                return _error(400, str(e))
            except BadInput as e:
                return _error(400, str(e))
            except NotReady as e:
                return _error(503, str(e), {"Retry-After": "5"})
            except QueueFull as e:
                return _error(429, f"server is overloaded: {e}", {"Retry-After": "1"})
            except RequestValidationError as e:
                return _error(400, "; ".join(str(x.get("msg")) for x in e.errors()) or "invalid request")

        return route


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


OIP_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.OipErrorResponse, "description": desc} for code, desc in {
        400: "malformed request, bad tensors or parameters, unusable audio", 401: "missing or wrong API key",
        404: "unknown model", 408: "request body too slow", 413: "body or audio too large",
        429: "queue full", 503: "model not ready"}.items()}

router = APIRouter(prefix="/v2", route_class=OipRoute, tags=["open inference protocol"],
                   responses=OIP_ERRORS)


def _models(service: ModelService, bundle: Bundle | None) -> dict[str, str]:
    """Served OIP model names -> task."""
    name = service.settings.model_name
    out = {name: "embed"}
    if bundle is None or bundle.head is not None:
        out[f"{name}-lid"] = "lid"
    if bundle is None or bundle.units is not None:
        out[f"{name}-units"] = "units"
    return out


def _task(service: ModelService, model: str) -> str:
    tasks = _models(service, service.bundle)
    if model not in tasks:
        raise OipError(f"unknown model {model!r}; this server serves {', '.join(tasks)}", 404)
    return tasks[model]


def _metadata(service: ModelService, model: str, task: str) -> dict[str, Any]:
    b = service.bundle
    dim = b.dim if b else -1
    inputs = [{"name": "WAVEFORM", "datatype": "FP32", "shape": [-1]},
              {"name": "AUDIO", "datatype": "BYTES", "shape": [1]}]
    outputs = {
        "embed": [{"name": "EMBEDDING", "datatype": "FP32", "shape": [-1, dim]}],
        "lid": [{"name": "LANGUAGE", "datatype": "BYTES", "shape": [-1]},
                {"name": "PROBABILITY", "datatype": "FP32", "shape": [-1]}],
        "units": [{"name": "UNITS", "datatype": "INT32", "shape": [-1]},
                  {"name": "DURATIONS", "datatype": "INT32", "shape": [-1]}],
    }[task]
    params = {"embed": {"layer": "int", "pooling": "mean|none"}, "lid": {"top_k": "int"},
              "units": {"dedup": "bool"}}[task]
    return {"name": model, "versions": [service.settings.model_version], "platform": "pytorch",
            "inputs": inputs, "outputs": outputs, "parameters": params}


@router.get("")
async def server_metadata(service: ModelService = Depends(get_service)) -> dict[str, Any]:
    return {"name": "mhubert", "version": __version__, "extensions": EXTENSIONS}


@router.get("/models", dependencies=[Depends(require_key)])
async def models(service: ModelService = Depends(get_service)) -> dict[str, Any]:
    return {"models": [{"name": m, "versions": [service.settings.model_version], "ready": service.ready}
                       for m in _models(service, service.bundle)]}


@router.get("/models/{model}", dependencies=[Depends(require_key)])
@router.get("/models/{model}/versions/{version}", dependencies=[Depends(require_key)])
async def model_metadata(model: str, service: ModelService = Depends(get_service)) -> dict[str, Any]:
    return _metadata(service, model, _task(service, model))


@router.get("/models/{model}/ready")
@router.get("/models/{model}/versions/{version}/ready")
async def model_ready(model: str, service: ModelService = Depends(get_service)) -> Any:
    _task(service, model)
    body = {"name": model, "ready": service.ready}
    return body if service.ready else JSONResponse(body, status_code=503)


def _param(req: InferRequest, key: str, kind: type, default: Any) -> Any:
    v = req.parameters.get(key, default)
    if kind is bool and isinstance(v, str) and v.lower() in ("true", "false"):
        v = v.lower() == "true"
    if kind is int and isinstance(v, str) and v.lstrip("-").isdigit():  # curl users send "2"
        v = int(v)
    if kind is int and isinstance(v, bool) or not isinstance(v, kind):
        raise OipError(f"parameter {key!r} must be {kind.__name__}, got {v!r}")
    return v


async def _audio(req: InferRequest, service: ModelService, bundle: Bundle) -> Any:
    t = req.input("WAVEFORM", "AUDIO")
    if t.name == "WAVEFORM":
        if t.datatype != "FP32" or not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[0] == 1)):
            raise OipError(f"WAVEFORM must be FP32 [-1] ({SAMPLE_RATE} Hz mono), got {t.datatype} {t.shape}")
        return service.check_waveform(t.data, bundle)
    if t.datatype != "BYTES" or t.data.size != 1:
        raise OipError(f"AUDIO must be BYTES [1] (one encoded file), got {t.datatype} {t.shape}")
    data = t.data.reshape(-1)[0]
    if "binary_data_size" not in t.parameters:  # JSON: the file as base64 text
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise OipError("AUDIO in JSON must be base64 text of the encoded file") from None
    return await service.preprocess(data, bundle)


async def _predict(service: ModelService, job: Job) -> Any:
    return await service.predict(job)


@router.post("/models/{model}/infer", dependencies=[Depends(require_key)])
@router.post("/models/{model}/versions/{version}/infer", dependencies=[Depends(require_key)])
async def infer(model: str, request: Request, service: ModelService = Depends(get_service)) -> Response:
    task = _task(service, model)
    bundle = service.snapshot(admitted=request.scope.get(ADMITTED, False))  # one bundle to the response
    if task == "lid" and bundle.head is None or task == "units" and bundle.units is None:
        raise OipError(f"model {model!r} is not loaded", 404)
    req = parse_request(await read_raw(request, service.settings), request.headers.get(HEADER))
    if task == "embed":
        layer = _param(req, "layer", int, bundle.num_layers)
        if layer < 0:
            layer += bundle.num_layers + 1
        if not 0 <= layer <= bundle.num_layers:
            raise OipError(f"layer {layer} is out of range: the model has hidden states "
                           f"0..{bundle.num_layers}")
        pooling = _param(req, "pooling", str, "mean")
        if pooling not in ("mean", "none"):
            raise OipError(f"pooling must be mean or none, got {pooling!r}")
    elif task == "lid":
        top_k = _param(req, "top_k", int, service.settings.lid_top_k)
        if top_k < 1:
            raise OipError(f"top_k must be >= 1, got {top_k}")
    else:
        dedup = _param(req, "dedup", bool, False)
    wav = await _audio(req, service, bundle)
    if task == "embed":
        x = await _predict(service, Job(bundle, wav, "embed", (layer,), pool=pooling == "mean"))
        outputs = [("EMBEDDING", "FP32", x[0].numpy())]
    elif task == "lid":
        top = service.postprocess_lid(bundle, await _predict(service, Job(bundle, wav, "lid")), top_k)
        outputs = [("LANGUAGE", "BYTES", np.array([k.encode() for k, _ in top], dtype=object)),
                   ("PROBABILITY", "FP32", np.array([p for _, p in top], dtype=np.float32))]
    else:
        units = service.postprocess_units(await _predict(service, Job(bundle, wav, "units")), dedup)
        outputs = [("UNITS", "INT32", np.asarray(units.ids, dtype=np.int32))]
        if units.durations is not None:
            outputs.append(("DURATIONS", "INT32", np.asarray(units.durations, dtype=np.int32)))
    with service.timed("postprocess"):
        body, headers = encode_response(req, model, service.settings.model_version, outputs)
    return Response(body, headers=headers)
