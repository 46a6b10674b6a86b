"""The HuBERT model: config, encoder, pretraining head, span masking, checkpoint conversion.

The names below are loaded on first use (PEP 562), so importing a light submodule of this package
(``mhubert.model.cli`` for ``--help``, ``mhubert.model.config``) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HubertConfig": "mhubert.model.config",
    "load_fairseq": "mhubert.model.convert", "load_hf": "mhubert.model.convert",
    "load_model": "mhubert.model.convert", "save_hf": "mhubert.model.convert",
    "HubertModel": "mhubert.model.hubert", "HubertPretrainModel": "mhubert.model.hubert",
    "hubert_base": "mhubert.model.hubert", "hubert_tiny": "mhubert.model.hubert",
    "compute_span_mask": "mhubert.model.masking",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mhubert.model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
