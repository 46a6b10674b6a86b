"""The model service, KServe-like: ``load -> ready``, then per request ``preprocess -> predict ->
postprocess``, each timed into the Prometheus histograms of :mod:`api.metrics`.

A request calls :meth:`ModelService.snapshot` once and passes that :class:`~api.bundle.Bundle` along:
its layer check, its batcher job and its postprocessing all use it, so a reload between them never
runs the request on the other model. ``reload()`` builds the new bundle first and swaps it in; the
micro-batcher (owned here, started and stopped by the app's lifespan) groups jobs by bundle.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from starlette.concurrency import run_in_threadpool
from torch import Tensor

from api.batching import MicroBatcher, NotReady
from api.bundle import Bundle, load_bundle, make_bundle
from api.intake import check_waveform, decode_audio
from api.metrics import Metrics
from api.settings import Settings
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.lid.head import mean_pool

log = logging.getLogger(__name__)

TASKS = ("embed", "lid", "units")


@dataclass(frozen=True)
class Job:
    """One request for the batcher: its bundle snapshot, (S,) float32 16 kHz audio and what it wants."""

    bundle: Bundle
    wav: Tensor
    task: str = "embed"
    layers: tuple[int, ...] = ()
    pool: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")


@dataclass
class Units:
    """Postprocessed units: ids at the frame rate, and run lengths when deduplicated."""

    ids: list[int]
    durations: list[int] | None = None


ADMITTED = "mhubert.admitted"   # ASGI scope key: the request arrived before draining began


@dataclass
class ModelService:
    """Holds the current bundle; ``state`` is ``loading`` -> ``ready`` (or ``failed`` with ``error``)."""

    settings: Settings
    metrics: Metrics | None = None
    bundle: Bundle | None = None
    state: str = "loading"
    error: str = ""
    draining: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.device = _pick_device(s.device)
        if self.metrics is None:
            self.metrics = Metrics(s.model_name, s.model_version)
        self.batcher = MicroBatcher(self.run_batch, s.max_batch_size, s.max_wait_ms,
                                    int(s.max_batch_audio_s * SAMPLE_RATE), s.max_queue, self.metrics)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.bundle is not None and self.state == "ready" and not self.draining

    def load(self) -> Bundle:
        """Load the configured sources; on failure ``state`` is ``failed`` and the error is kept."""
        with self._lock:
            try:
                bundle = load_bundle(self.settings, self.device)
            except Exception as e:
                log.error("model load failed: %s: %s", type(e).__name__, e)
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
                self._set_ready_gauge()
                raise
            self.attach(bundle)
            return bundle

    def reload(self) -> Bundle:
        """Load the configured sources again and swap the new bundle in (stays ready meanwhile)."""
        with self._lock:
            bundle = load_bundle(self.settings, self.device)
            self.attach(bundle)
            return bundle

    def make_bundle(self, model: Any, head: Any | None = None, labels: list[str] | None = None,
                    source: str = "", lid_source: str = "") -> Bundle:
        """An in-memory encoder (+ head) as a bundle (tests, embedding the service elsewhere)."""
        return make_bundle(model, self.settings, self.device, head, labels, source, lid_source)

    def attach(self, bundle: Bundle) -> None:
        """Serve ``bundle`` from now on; requests holding the previous one finish on it."""
        self.bundle, self.state, self.error = bundle, "ready", ""
        self._set_ready_gauge()

    def snapshot(self, admitted: bool = False) -> Bundle:
        """The bundle this request will use to its end; NotReady when none is loaded, or when the
        server is draining and the request was not ``admitted`` before it began (:func:`admit`)."""
        bundle = self.bundle
        if bundle is None or self.state != "ready":
            detail = f": {self.error}" if self.error else ""
            raise NotReady(f"model is {self.state}{detail}")
        if self.draining and not admitted:
            raise NotReady("server is shutting down")
        return bundle

    def admit(self, scope: dict) -> None:
        """Stamp an incoming request (its ASGI scope) as accepted unless the server is draining: a
        request that arrived before SIGTERM is served to its end, whatever it still awaits then (the
        rest of its body, a threadpool dependency)."""
        scope[ADMITTED] = not self.draining

    def _set_ready_gauge(self) -> None:
        if self.metrics:
            self.metrics.model(self.metrics.ready).set(1.0 if self.ready else 0.0)

    def start_draining(self) -> None:
        """SIGTERM: readiness false at once; requests already accepted go on."""
        self.draining = True
        self._set_ready_gauge()

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Observe the block's wall time in the ``stage`` histogram (preprocess, postprocess)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.metrics:
                self.metrics.model(getattr(self.metrics, stage)).observe(time.perf_counter() - t0)

    # -- the request path -----------------------------------------------------------------------
    async def preprocess(self, data: bytes, bundle: Bundle) -> Tensor:
        """Encoded audio -> checked (S,) float32 16 kHz mono (decoding runs off the event loop)."""
        with self.timed("preprocess"):
            return await run_in_threadpool(decode_audio, data, self.settings, bundle.receptive_field)

    def check_waveform(self, wav: np.ndarray | Tensor, bundle: Bundle) -> Tensor:
        """A client's raw 16 kHz waveform through the same limits and normalisation as decoded audio."""
        with self.timed("preprocess"):
            return check_waveform(torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1),
                                  self.settings, bundle.receptive_field)

    async def predict(self, job: Job) -> Any:
        """The job's raw output, computed in a micro-batch with other requests' jobs."""
        result = await self.batcher.submit(job, job.wav.numel())
        if self.metrics:
            self.metrics.model(self.metrics.audio_seconds).inc(job.wav.numel() / SAMPLE_RATE)
        return result

    def postprocess_lid(self, bundle: Bundle, probs: Tensor, top_k: int) -> list[tuple[str, float]]:
        with self.timed("postprocess"):
            p, idx = torch.topk(probs, min(top_k, probs.numel()))
            return [(bundle.labels[i], float(v)) for v, i in zip(p.tolist(), idx.tolist(), strict=True)]

    def postprocess_units(self, ids: np.ndarray, dedup: bool) -> Units:
        with self.timed("postprocess"):
            return dedup_units(ids) if dedup else Units(ids=[int(x) for x in ids])

    # -- batched inference (the batcher's thread) -----------------------------------------------
    def run_batch(self, jobs: list[Job]) -> list[Any]:
        """Run ``jobs``, grouped by bundle (and units encoder), each group as one padded batch.

        Per job: embed -> (len(layers), D) pooled or (len(layers), T, D); lid -> probabilities (C,);
        units -> ids (T,) int64. Padding is masked, so results do not depend on the batch.
        """
        out: list[Any] = [None] * len(jobs)
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault((id(j.bundle), j.task == "units"), []).append(i)
        for idx in groups.values():
            for i, r in zip(idx, self._run_group([jobs[i] for i in idx]), strict=True):
                out[i] = r
        return out

    def _run_group(self, jobs: list[Job]) -> list[Any]:
        bundle = jobs[0].bundle
        units = jobs[0].task == "units"
        if units and bundle.units is None:
            raise BadInput("no units index is loaded")
        encoder, model = ((bundle.units.encoder, bundle.units.model) if units
                          else (bundle.backend, bundle.model))
        if units:
            top = bundle.units.layer
        elif any(j.task == "lid" for j in jobs):
            top = bundle.num_layers
        else:
            top = max(max(j.layers) for j in jobs)
        lengths = torch.tensor([j.wav.numel() for j in jobs], dtype=torch.long)
        wav = torch.zeros(len(jobs), int(lengths.max()))
        for i, j in enumerate(jobs):
            wav[i, : j.wav.numel()] = j.wav
        hidden = encoder.hidden_states(wav.to(self.device), lengths.to(self.device), top)
        frames = model.frame_lengths(lengths).tolist()
        if units:
            return _label(bundle, hidden[top], frames)
        probs = None
        if any(j.task == "lid" for j in jobs):
            with torch.inference_mode():
                pooled = mean_pool(hidden, torch.tensor(frames, device=hidden[0].device))
                probs = torch.softmax(bundle.head(pooled.to(self.device)).float(), dim=-1).cpu()
        out: list[Any] = []
        for i, j in enumerate(jobs):
            if j.task == "lid":
                out.append(probs[i])
                continue
            x = torch.stack([hidden[k][i, : frames[i]] for k in j.layers]).float()  # (L', T, D)
            out.append((x.mean(dim=1) if j.pool else x).cpu())
        return out


def _label(bundle: Bundle, feats: Tensor, frames: list[int]) -> list[np.ndarray]:
    """Index labels of each item's valid frames, all frames of the batch in one search."""
    x = torch.cat([feats[i, :n] for i, n in enumerate(frames)]).float().cpu().numpy()
    ids = bundle.units.index.label(x, method="exact" if bundle.units.exact else "auto")
    return np.split(ids.astype(np.int64), np.cumsum(frames)[:-1])


def dedup_units(ids: np.ndarray | list[int]) -> Units:
    """Collapse repeats (textless-lib ``deduplicate``): the distinct runs and their lengths in frames."""
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size == 0:
        return Units(ids=[], durations=[])
    starts = np.flatnonzero(np.r_[True, arr[1:] != arr[:-1]])
    durations = np.diff(np.r_[starts, arr.size])
    return Units(ids=arr[starts].tolist(), durations=durations.tolist())


def normalize_vectors(x: Tensor) -> Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(x, p=2.0, dim=-1)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("device=cuda but no CUDA device is available")
    return torch.device(name)
