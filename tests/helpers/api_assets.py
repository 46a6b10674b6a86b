"""Helpers shared by the API tests: tiny model assets and audio encoders."""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import torch

LID_LABELS = ["en", "fr", "sw"]


def make_assets(root: str, seed: int = 0) -> dict[str, str]:
    """A random tiny encoder saved both ways (trainer .pt, transformers dir) and a random LID head."""
    from mhubert.lid.head import LidClassifier, LidHeadConfig, save_head
    from mhubert.model import hubert_tiny, save_hf
    from mhubert.model.convert import save_checkpoint_model

    torch.manual_seed(seed)
    model = hubert_tiny().eval()
    ckpt, hf_dir, lid_dir = (os.path.join(root, x) for x in ("model.pt", "hf", "lid"))
    save_checkpoint_model(model, ckpt)
    save_hf(model, hf_dir)
    head = LidClassifier(LidHeadConfig(num_layers=model.cfg.num_layers, dim=model.cfg.embed_dim,
                                       num_classes=len(LID_LABELS)))
    torch.nn.init.normal_(head.classifier.weight, std=1.0)
    save_head(head, LID_LABELS, lid_dir)
    return {"ckpt": ckpt, "hf": hf_dir, "lid": lid_dir}


def wav_bytes(x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """Encode (samples,) or (samples, channels) float audio."""
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = 16000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
