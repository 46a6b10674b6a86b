"""Prometheus metrics of the service, all prefixed ``mhubert_``, on a registry owned by one app.

Latency is split the way KServe/TEI/Triton split it: queue wait, preprocessing (decode + resample),
inference (the batched forward pass: ``predict``) and postprocessing; batch-size and audio-seconds
series are the numbers the micro-batcher is tuned with.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's metric families on a private registry (several apps can live in one process)."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"model_name": model_name, "model_version": model_version}
        r = self.registry
        self.requests = Counter("mhubert_requests", "HTTP requests by route and status code",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("mhubert_request_duration_seconds", "Whole request latency",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        model_labels = ["model_name", "model_version"]
        self.queue_wait = Histogram("mhubert_queue_wait_seconds", "Time a request waited for a batch",
                                    model_labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.preprocess = Histogram("mhubert_preprocess_seconds", "Audio decoding and resampling",
                                    model_labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("mhubert_inference_seconds", "Forward pass of one batch (predict)",
                                   model_labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.postprocess = Histogram("mhubert_postprocess_seconds", "Turning outputs into a response",
                                     model_labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mhubert_batch_size", "Requests per forward pass", model_labels,
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.audio_seconds = Counter("mhubert_audio_seconds", "Seconds of audio processed",
                                     model_labels, registry=r)
        self.queue_size = Gauge("mhubert_queue_size", "Requests waiting for the model", registry=r)
        self.in_progress = Gauge("mhubert_requests_in_progress", "HTTP requests being handled", registry=r)
        self.ready = Gauge("mhubert_model_ready", "1 when the model is loaded and serving",
                           model_labels, registry=r)

    def model(self, metric):  # noqa: ANN001 - a prometheus metric family
        """The child of a per-model metric for this server's model."""
        return metric.labels(**self.labels)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts requests by route template and status, times them."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        t0 = time.perf_counter()
        self.metrics.in_progress.inc()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_progress.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - t0)
