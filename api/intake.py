"""Audio intake: the request body (raw or multipart) to a checked 16 kHz mono waveform.

Limits are applied as early as possible: the body size while streaming it (and the time it takes:
a body not complete after ``body_timeout_s`` gets 408, before the request ever reaches the batcher),
multipart part counts and sizes, the duration from the header before decoding (a few kB of FLAC can
hold hours of silence), then the decoded length and values.
"""

from __future__ import annotations

import asyncio
import time

import torch
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from api.errors import ApiError
from api.settings import Settings
from mhubert import audio
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import AudioError, BadInput

AUDIO_BODY = {
    "requestBody": {
        "required": True,
        "description": "Audio (wav/flac/ogg/mp3, any rate and channel count) as the raw body or as "
                       "the multipart field `file`.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}}}},
        },
    }
}


async def read_raw(request: Request, settings: Settings) -> bytes:
    """The whole body: 413 past ``max_body_bytes`` (checked while streaming), 408 when it is not
    complete within ``body_timeout_s``."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    deadline = time.monotonic() + settings.body_timeout_s
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - time.monotonic()))
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(408, "request_timeout", f"the request body was not complete within "
                                                   f"{settings.body_timeout_s:g} s", {"Connection": "close"}
                           ) from None
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", f"body exceeds the {limit}-byte limit")
    return bytes(body)


async def read_body(request: Request, settings: Settings) -> bytes:
    """The audio bytes of a raw or multipart body, within the body limits."""
    body = await read_raw(request, settings)
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        return await _multipart_file(request, body, settings)
    if ctype.startswith("application/x-www-form-urlencoded"):
        raise BadInput("send audio as the raw body or as a multipart file field named 'file'")
    return body


async def _multipart_file(request: Request, body: bytes, settings: Settings) -> bytes:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    n = settings.max_form_parts
    try:
        # starlette's parser enforces the part counts; a non-file field is held in memory, so it is
        # capped well below the body limit (a form field is never audio)
        # (a scope without "app": starlette then raises the parser's own error, not a bare 400)
        scope = {k: v for k, v in request.scope.items() if k != "app"}
        form = await Request(scope, replay).form(max_files=n, max_fields=n, max_part_size=64 * 1024)
    except MultiPartException as e:
        msg = str(getattr(e, "message", e))
        status = 413 if ("Too many" in msg or "exceeded" in msg) else 400
        code = "payload_too_large" if status == 413 else "bad_request"
        raise ApiError(status, code, f"multipart body refused: {msg}") from e
    except Exception as e:  # noqa: BLE001 - a malformed multipart body is the client's problem
        raise ApiError(400, "bad_request", f"malformed multipart body: {getattr(e, 'detail', e)}") from e
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise BadInput("multipart body has no file part (send the audio in the field 'file')")
        upload = form.get("file")
        return await (upload if isinstance(upload, UploadFile) else files[0]).read()
    finally:
        await form.close()


def decode_audio(data: bytes, settings: Settings, receptive_field: int) -> torch.Tensor:
    """Bytes -> (samples,) float32 16 kHz mono, with the size and sanity limits applied."""
    if not data:
        raise AudioError("empty body: no audio was sent")
    try:
        head = audio.info_bytes(data)
        if head.frames / head.sample_rate > settings.max_audio_s:
            raise ApiError(413, "audio_too_long", f"audio is {head.frames / head.sample_rate:.1f} s long; "
                                                  f"the limit is {settings.max_audio_s:g} s")
        wav = audio.decode(data, target_sr=SAMPLE_RATE, normalize=False)
    except (ApiError, AudioError):
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means the bytes are not usable audio
        raise AudioError(f"undecodable audio: {type(e).__name__}: {e}") from e
    return check_waveform(wav, settings, receptive_field)


def check_waveform(wav: torch.Tensor, settings: Settings, receptive_field: int) -> torch.Tensor:
    """A decoded (samples,) 16 kHz waveform within the length limits, finite, normalised if configured."""
    if wav.dim() != 1:
        raise AudioError(f"a waveform must be 1-D (samples,), got shape {tuple(wav.shape)}")
    seconds = wav.numel() / SAMPLE_RATE
    if seconds > settings.max_audio_s:
        raise ApiError(413, "audio_too_long", f"audio is {seconds:.1f} s long; the limit is "
                                              f"{settings.max_audio_s:g} s")
    min_samples = max(receptive_field, int(settings.min_audio_s * SAMPLE_RATE))  # one frame at least
    if wav.numel() < min_samples:
        raise AudioError(f"audio is too short: {wav.numel()} samples at {SAMPLE_RATE} Hz, need at least "
                         f"{min_samples}")
    if not torch.isfinite(wav).all():
        raise AudioError("audio contains NaN or infinite samples")
    if settings.normalize_audio:
        wav = audio.normalize(wav)
    return wav.contiguous()
