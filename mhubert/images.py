"""The container images of the platform, named once (the charts' defaults match these).

``MHUBERT_CPU_IMAGE`` / ``MHUBERT_GPU_IMAGE`` / ``MHUBERT_API_IMAGE`` override them, read when
called (so a pipeline compiled after setting one uses it).
"""

from __future__ import annotations

import os

from mhubert import __version__

REGISTRY = "ghcr.io/mhubert"
DEFAULTS = {"cpu": f"{REGISTRY}/mhubert-cpu:{__version__}", "gpu": f"{REGISTRY}/mhubert-gpu:{__version__}",
            "api": f"{REGISTRY}/mhubert-api:{__version__}"}


def image(kind: str) -> str:
    """The image of ``kind`` (``cpu`` | ``gpu`` | ``api``), honouring ``MHUBERT_<KIND>_IMAGE``."""
    if kind not in DEFAULTS:
        raise ValueError(f"image kind must be one of {', '.join(DEFAULTS)}, got {kind!r}")
    return os.environ.get(f"MHUBERT_{kind.upper()}_IMAGE") or DEFAULTS[kind]


def cpu_image() -> str:
    return image("cpu")


def gpu_image() -> str:
    return image("gpu")


def api_image() -> str:
    return image("api")
