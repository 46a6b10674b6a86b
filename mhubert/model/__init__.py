"""The HuBERT model: config, encoder, pretraining head, loss, span masking, checkpoint conversion
(transformers, trainer checkpoints, fairseq both ways).

The names below are loaded on first use (PEP 562), so importing a light submodule of this package
(``mhubert.model.cli`` for ``--help``, ``mhubert.model.config``) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HubertConfig": "mhubert.model.config",
    "load_hf": "mhubert.model.convert", "load_model": "mhubert.model.convert",
    "load_pretrain": "mhubert.model.convert", "load_pretrain_model": "mhubert.model.convert",
    "save_hf": "mhubert.model.convert",
    "load_fairseq": "mhubert.model.fairseq", "save_fairseq": "mhubert.model.fairseq",
    "HubertModel": "mhubert.model.hubert", "HubertPretrainModel": "mhubert.model.hubert",
    "hubert_base": "mhubert.model.hubert", "hubert_tiny": "mhubert.model.hubert",
    "PretrainOutput": "mhubert.model.loss", "pretrain_loss": "mhubert.model.loss",
    "compute_span_mask": "mhubert.model.masking",
    "model_digest": "mhubert.model.digest",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mhubert.model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
