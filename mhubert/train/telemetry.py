"""Training telemetry as callbacks: Prometheus metrics per rank, TensorBoard scalars per run.

:class:`PrometheusMetrics` serves ``/metrics`` on ``port + LOCAL_RANK`` (one port per process of a
node, as the pod template declares) from its own registry, with a ``rank`` label. Gauges:

=========================================  ==================================================
``mhubert_train_updates``                   optimizer updates done (the run's absolute count)
``mhubert_train_loss``                      loss of the last log interval (all ranks' mean)
``mhubert_train_accuracy_masked``           masked-frame accuracy, last log interval
``mhubert_train_accuracy_unmasked``         unmasked-frame accuracy, last log interval
``mhubert_train_audio_seconds_per_second``  throughput of all ranks, last log interval
``mhubert_train_step_seconds``              wall time of this rank's last update
``mhubert_train_grad_norm``                 gradient norm (mean over the last log interval)
``mhubert_train_learning_rate``             learning rate of the last update
``mhubert_train_device_memory_bytes``       peak device memory (CUDA) or RSS (CPU) of this rank
``mhubert_train_seconds_since_checkpoint``  seconds since the last committed checkpoint
=========================================  ==================================================

:class:`TensorBoardScalars` (rank 0) writes the same figures with ``torch.utils.tensorboard`` into a
local directory and copies its event files to ``<run>/tensorboard/`` (at most once a minute, and at the
end), so any fsspec URL (S3 included) works and a Kubeflow Tensorboard pointed at the run's prefix
shows the curves. On a local path it writes there directly.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.train.callbacks import Callback

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
UPLOAD_EVERY_S = 60.0
METRICS = {
    "updates": "Optimizer updates done",
    "loss": "Training loss of the last log interval (mean over ranks)",
    "accuracy_masked": "Masked-frame prediction accuracy of the last log interval",
    "accuracy_unmasked": "Unmasked-frame prediction accuracy of the last log interval",
    "audio_seconds_per_second": "Audio seconds trained per second, all ranks, last log interval",
    "step_seconds": "Wall time of this rank's last optimizer update",
    "grad_norm": "Gradient norm, mean over the last log interval",
    "learning_rate": "Learning rate of the last update",
    "device_memory_bytes": "Peak device memory (CUDA) or resident set size (CPU) of this rank",
    "seconds_since_checkpoint": "Seconds since the last committed checkpoint",
}
# log.jsonl key -> metric / TensorBoard tag
FROM_RECORD = {"loss": "loss", "acc_m": "accuracy_masked", "acc_u": "accuracy_unmasked",
               "audio_s_per_s": "audio_seconds_per_second", "gnorm": "grad_norm",
               "lr": "learning_rate"}


class PrometheusMetrics(Callback):
    """Serve this rank's training metrics on ``port + LOCAL_RANK`` (``addr`` default all
    interfaces, as a pod needs)."""

    def __init__(self, port: int, addr: str = "0.0.0.0"):
        self.base_port, self.addr = port, addr
        self.port: int | None = None
        self._server = None
        self.gauges: dict[str, Any] = {}

    def on_train_start(self, trainer) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        rank = str(trainer.dist.rank)
        for name, doc in METRICS.items():
            self.gauges[name] = Gauge(f"mhubert_train_{name}", doc, ["rank"],
                                      registry=self.registry).labels(rank=rank)
        self.gauges["seconds_since_checkpoint"].set_function(trainer.writer.seconds_since_commit)
        self.gauges["updates"].set(trainer.num_updates)
        self.port = self.base_port + trainer.dist.local_rank
        try:
            self._server, _ = start_http_server(self.port, addr=self.addr, registry=self.registry)
        except OSError as e:
            raise BadInput(f"cannot serve metrics on {self.addr}:{self.port} (--metrics-port "
                           f"{self.base_port} + LOCAL_RANK {trainer.dist.local_rank}): {e}") from e
        log.info("Prometheus metrics of rank %s on port %d", rank, self.port)

    def on_step_end(self, trainer, stats: dict[str, Any]) -> None:
        self.gauges["updates"].set(trainer.num_updates)
        self.gauges["step_seconds"].set(stats["step_time_s"])
        self.gauges["learning_rate"].set(stats["lr"])

    def on_log(self, trainer, record: dict[str, Any]) -> None:
        self.gauges["updates"].set(record["step"])
        for key, name in FROM_RECORD.items():
            self.gauges[name].set(record[key])
        self.gauges["device_memory_bytes"].set(record["mem_gb"] * 2**30)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TensorBoardScalars(Callback):
    """Rank 0 writes the log records as TensorBoard scalars under ``<run>/tensorboard``."""

    def __init__(self) -> None:
        self.writer = None
        self.local: str | None = None
        self.remote: str | None = None
        self._tmp: str | None = None
        self._uploaded = 0.0

    def on_train_start(self, trainer) -> None:
        if trainer.dist.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.remote = trainer.run.path(TENSORBOARD_DIR)
        self.local = storage.local_path(self.remote)
        if self.local is None:  # object storage: write here, copy the files after each flush
            self.local = self._tmp = tempfile.mkdtemp(prefix="mhubert-tb-")
        self.writer = SummaryWriter(self.local)

    def on_log(self, trainer, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record["step"])
        for key, name in FROM_RECORD.items():
            self.writer.add_scalar(f"train/{name}", record[key], step)
        self.writer.add_scalar("train/device_memory_gb", record["mem_gb"], step)
        self.writer.flush()
        if time.monotonic() - self._uploaded >= UPLOAD_EVERY_S:
            self._upload()

    def _upload(self) -> None:
        if self._tmp is None or self.local is None or self.remote is None:
            return
        self._uploaded = time.monotonic()
        for name in sorted(os.listdir(self.local)):
            with open(os.path.join(self.local, name), "rb") as f:
                storage.atomic_write(storage.join(self.remote, name), f.read())

    def on_train_end(self, trainer, summary: dict[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self._upload()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def telemetry_callbacks(metrics_port: int = 0, tensorboard: bool = True) -> list[Callback]:
    """The callbacks ``train run`` installs: Prometheus when ``metrics_port`` > 0, TensorBoard."""
    out: list[Callback] = []
    if metrics_port:
        out.append(PrometheusMetrics(metrics_port))
    if tensorboard:
        out.append(TensorBoardScalars())
    return out
