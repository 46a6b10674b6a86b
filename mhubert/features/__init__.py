"""Frame features for clustering: MFCC (iteration 1) and SSL layer features (``features.ssl``,
imported on demand so MFCC users do not load the model code).

``mfcc``, ``mfcc_batch`` and ``num_frames`` are loaded on first use (PEP 562), so ``mhubert features
--help`` does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"mfcc": "mhubert.features.mfcc", "mfcc_batch": "mhubert.features.mfcc",
            "num_frames": "mhubert.features.mfcc"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mhubert.features' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
