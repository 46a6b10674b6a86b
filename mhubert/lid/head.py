"""Language-identification head on a frozen HuBERT: weighted layer sum, mean pooling, linear layer.

As in transformers' ``HubertForSequenceClassification(use_weighted_layer_sum=True)``, the hidden
states of all ``num_layers + 1`` layers are mixed with softmax-normalised learned weights (uniform at
initialisation). Mean pooling over the valid frames is linear, so it commutes with the weighted sum:
the head works on per-utterance pooled vectors ``(num_layers + 1, D)``, which are what the trainer
caches. Saved into a :class:`mhubert.artifacts.LidHead` directory: ``head.pt`` (config, state dict
and the feature-extraction options the head was trained with) and ``labels.json`` (language codes).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mhubert import storage
from mhubert.artifacts import LidHead
from mhubert.errors import BadInput

HEAD_FILE = LidHead.HEAD
LABELS_FILE = LidHead.LABELS


@dataclass
class LidHeadConfig:
    num_layers: int      # hidden states mixed = num_layers + 1 (the CNN/projection output included)
    dim: int             # encoder width D
    num_classes: int


def mean_pool(hidden_states: list[Tensor] | tuple[Tensor, ...], frame_lengths: Tensor | None) -> Tensor:
    """Per-layer mean over valid frames: list of (B, T, D) -> (B, L+1, D)."""
    h = torch.stack(list(hidden_states), dim=1)  # (B, L+1, T, D)
    if frame_lengths is None:
        return h.mean(dim=2)
    t = h.shape[2]
    mask = (torch.arange(t, device=h.device)[None, :] < frame_lengths[:, None].to(h.device)).to(h.dtype)
    denom = mask.sum(dim=1).clamp(min=1.0)[:, None, None]
    return (h * mask[:, None, :, None]).sum(dim=2) / denom


class LidClassifier(nn.Module):
    """Logits from pooled layer vectors: ``forward(pooled (B, L+1, D)) -> (B, C)``.

    ``mean``/``std`` buffers (L+1, D) standardise the frozen features (set from the training split).
    """

    def __init__(self, cfg: LidHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.num_layers + 1
        self.layer_weights = nn.Parameter(torch.zeros(n))  # softmax(0) = uniform 1/(L+1)
        self.classifier = nn.Linear(cfg.dim, cfg.num_classes)
        self.register_buffer("mean", torch.zeros(n, cfg.dim))
        self.register_buffer("std", torch.ones(n, cfg.dim))
        self.extraction: dict[str, Any] = {}  # how its features were pooled (stored in head.pt)

    def layer_mix(self) -> Tensor:
        """The softmax-normalised layer weights (L+1,)."""
        return torch.softmax(self.layer_weights, dim=0)

    def forward(self, pooled: Tensor) -> Tensor:
        if pooled.dim() != 3 or pooled.shape[1:] != self.mean.shape:
            raise BadInput(f"LID head expects (B, {self.mean.shape[0]}, {self.mean.shape[1]}) pooled "
                           f"features, got {tuple(pooled.shape)}")
        x = (pooled.float() - self.mean) / self.std
        mixed = (self.layer_mix()[None, :, None] * x).sum(dim=1)  # (B, D)
        return self.classifier(mixed)

    def forward_hidden(self, hidden_states: list[Tensor], frame_lengths: Tensor | None) -> Tensor:
        """Logits straight from the encoder's hidden states (list of (B, T, D)) and frame lengths."""
        return self(mean_pool(hidden_states, frame_lengths))


def save_head(head: LidClassifier, labels: list[str], out_dir: str,
              extraction: dict[str, Any] | None = None) -> LidHead:
    """Write ``head.pt`` (with the ``extraction`` options) and ``labels.json`` into the LID-head
    artifact at ``out_dir`` (each atomically); the caller commits it once its other files are in."""
    if len(labels) != head.cfg.num_classes:
        raise BadInput(f"{len(labels)} labels for a head with {head.cfg.num_classes} classes")
    art = LidHead(out_dir)
    buf = io.BytesIO()
    torch.save({"config": asdict(head.cfg), "state_dict": head.state_dict(),
                "extraction": dict(extraction if extraction is not None else head.extraction)}, buf)
    art.write_bytes(HEAD_FILE, buf.getvalue())
    art.write_text(LABELS_FILE, json.dumps(list(labels)))
    return art


def load_head(url: str, map_location: str | torch.device = "cpu") -> tuple[LidClassifier, list[str]]:
    """Read a head saved by :func:`save_head` from directory ``url``; returns (head in eval mode,
    labels). ``head.extraction`` holds the options its training features were pooled with."""
    art = LidHead(url)
    head_url = art.path(HEAD_FILE)
    if not storage.exists(head_url):
        raise BadInput(f"no LID head at {url} (expected {HEAD_FILE} and {LABELS_FILE})")
    try:
        ckpt = torch.load(io.BytesIO(art.read_bytes(HEAD_FILE)), map_location=map_location,
                          weights_only=True)
        cfg = LidHeadConfig(**ckpt["config"])
        head = LidClassifier(cfg)
        head.load_state_dict(ckpt["state_dict"])
        head.extraction = dict(ckpt.get("extraction") or {})
    except (KeyError, TypeError, RuntimeError, EOFError) as e:
        raise BadInput(f"{head_url} is not a LID head checkpoint: {e}") from e
    labels = art.read_json(LABELS_FILE)
    if not isinstance(labels, list) or len(labels) != cfg.num_classes:
        raise BadInput(f"{url}/{LABELS_FILE} must list {cfg.num_classes} language codes")
    return head.eval(), [str(x) for x in labels]
