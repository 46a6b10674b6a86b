"""The container images of the project, named once (images/ and the top-level Dockerfile build them).

Each name can be overridden by its environment variable (read when this module is imported: at
pipeline compile time for the components and the pipeline's defaults): ``MHUBERT_CPU_IMAGE``
(CPU stages), ``MHUBERT_GPU_IMAGE`` (stages that request a GPU, and the training jobs),
``MHUBERT_API_IMAGE`` (the REST service).
"""

from __future__ import annotations

import os

VERSION = "0.1.0"
REGISTRY = "ghcr.io/mhubert"

CPU_IMAGE = os.environ.get("MHUBERT_CPU_IMAGE") or f"{REGISTRY}/mhubert-cpu:{VERSION}"
GPU_IMAGE = os.environ.get("MHUBERT_GPU_IMAGE") or f"{REGISTRY}/mhubert-gpu:{VERSION}"
API_IMAGE = os.environ.get("MHUBERT_API_IMAGE") or f"{REGISTRY}/mhubert-api:{VERSION}"


def for_resources(gpus: int) -> str:
    """The image a task with ``gpus`` GPUs runs: the GPU image (CUDA torch, faiss-gpu) when it has one."""
    return GPU_IMAGE if gpus > 0 else CPU_IMAGE
