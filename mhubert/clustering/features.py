"""Feature sources for clustering: per-utterance (frames, D) float32 matrices.

- ``mfcc``: 39-d Kaldi MFCC + Δ + ΔΔ at 100 Hz (labels at 100 Hz), ``mhubert.features.mfcc_batch``.
- ``hubert``: layer L of a model at 50 Hz (labels at 50 Hz), ``mhubert.features.ssl.layer_features``,
  batched with per-utterance lengths (the model masks padding), on CUDA when available.

Audio is read with ``mhubert.audio.load``; ``normalize=None`` picks the recipe's default: raw waveform
for MFCC (fairseq ``dump_mfcc_feature.py``), layer-normed for hubert (mHuBERT-147 ``normalize: true``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mhubert.errors import BadInput

SOURCES = ("mfcc", "hubert")
MFCC_DIM = 39


@dataclass
class FeatureSpec:
    """What to extract. ``model`` (URL) and ``layer`` are needed for ``hubert``."""

    source: str = "mfcc"
    model: str | None = None
    layer: int = 0
    normalize: bool | None = None
    batch_size: int = 16
    device: str | None = None   # None: cuda when available, else cpu

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BadInput(f"feature source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "hubert" and not self.model:
            raise BadInput("hubert features need --model (a transformers directory or trainer .pt)")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def label_rate(self) -> int:
        """Frames (labels) per second: 100 for MFCC, 50 for hubert."""
        return 100 if self.source == "mfcc" else 50

    @property
    def do_normalize(self) -> bool:
        return (self.source == "hubert") if self.normalize is None else bool(self.normalize)

    def to_dict(self) -> dict:
        return {"source": self.source, "model": self.model, "layer": self.layer,
                "normalize": self.do_normalize, "label_rate": self.label_rate}


class FeatureExtractor:
    """Turns waveforms into per-utterance features for a :class:`FeatureSpec`."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.model = None
        if spec.device is None:
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(spec.device)
        if spec.source == "hubert":
            from mhubert.model import load_model

            self.model = load_model(spec.model).to(self.device).eval()
            n_layers = len(self.model.layers)
            if not 0 <= spec.layer <= n_layers:
                raise BadInput(f"--layer must be in [0, {n_layers}] for this model, got {spec.layer}")

    @property
    def dim(self) -> int:
        if self.model is None:
            return MFCC_DIM
        return int(self.model.cfg.embed_dim)

    @property
    def bytes_per_frame(self) -> int:
        return 4 * self.dim

    def num_frames(self, n_samples: int) -> int:
        """Frames (= labels) for an utterance of ``n_samples`` 16 kHz samples."""
        if self.model is None:
            return max(0, 1 + (int(n_samples) - 400) // 160)
        return max(0, int(self.model.num_frames(int(n_samples))))

    def extract_tensors(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """list of (samples_i,) float32 -> list of (frames_i, D) float32 tensors (on the device)."""
        if not wavs:
            return []
        if self.model is None:
            from mhubert.features import mfcc_batch

            return [f.float() for f in mfcc_batch([w.float().cpu() for w in wavs])]
        from mhubert.features.ssl import layer_features

        lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
        batch = torch.zeros(len(wavs), int(lengths.max()))
        for i, w in enumerate(wavs):
            batch[i, :w.numel()] = w
        feats, flen = layer_features(self.model, batch.to(self.device), lengths.to(self.device),
                                     self.spec.layer)
        return [feats[i, :int(flen[i])].float() for i in range(len(wavs))]

    def extract(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """list of (samples_i,) -> list of (frames_i, D) float32 numpy arrays."""
        return [t.detach().cpu().numpy().astype(np.float32, copy=False)
                for t in self.extract_tensors(wavs)]

    def load_audio(self, url: str) -> torch.Tensor:
        from mhubert.audio import load

        return load(url, normalize=self.spec.do_normalize)

    def iter_manifest(self, manifest, indices: Sequence[int], as_tensors: bool = False
                      ) -> Iterator[tuple[list[int], list]]:
        """Yield ``(indices, features)`` batch by batch over ``indices`` of ``manifest`` (in the given
        order, ``batch_size`` utterances at a time); a bad file raises AudioError naming it."""
        from mhubert.errors import AudioError

        bs = self.spec.batch_size
        for s in range(0, len(indices), bs):
            idx = [int(i) for i in indices[s:s + bs]]
            wavs = []
            for i in idx:
                try:
                    wavs.append(self.load_audio(manifest.url_of(i)))
                except AudioError as e:
                    raise AudioError(f"{manifest.url_of(i)}: {e}") from e
            feats = self.extract_tensors(wavs) if as_tensors else self.extract(wavs)
            yield idx, feats
