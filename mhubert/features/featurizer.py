"""The audio-to-features service of the stages: per-utterance (frames, D) float32 matrices.

(Not to be confused with ``mhubert.model.hubert.FeatureExtractor``, the model's conv stack.)

- ``mfcc``: 39-d Kaldi MFCC + Δ + ΔΔ (``mhubert.features.mfcc.mfcc_batch``) at
  ``SAMPLE_RATE / HOP`` frames a second (100 Hz).
- ``hubert``: layer L of a model (``mhubert.features.ssl.layer_features``) at ``SAMPLE_RATE / conv
  stride`` frames a second (50 Hz for the base conv stack), batched with per-utterance lengths (the
  model masks padding), on CUDA when available.

Audio is read with ``mhubert.audio.load``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mhubert.audio import load
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import AudioError, BadInput
from mhubert.features import mfcc as mfcc_mod
from mhubert.features.spec import FeatureSpec
from mhubert.features.ssl import layer_features
from mhubert.model import load_model


class Featurizer:
    """Turns waveforms into per-utterance features for a :class:`FeatureSpec`."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.model = None
        if spec.device is None:
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(spec.device)
        if spec.source == "hubert":
            self.model = load_model(spec.model).to(self.device).eval()
            n_layers = len(self.model.layers)
            if not 0 <= spec.layer <= n_layers:
                raise BadInput(f"--layer must be in [0, {n_layers}] for this model, got {spec.layer}")

    @property
    def dim(self) -> int:
        if self.model is None:
            return mfcc_mod.DIM
        return int(self.model.cfg.embed_dim)

    @property
    def frame_rate(self) -> int:
        """Frames (= labels) per second: from the MFCC hop, or the model's conv stride."""
        if self.model is None:
            return mfcc_mod.FRAME_RATE
        return SAMPLE_RATE // int(self.model.cfg.total_stride)

    @property
    def bytes_per_frame(self) -> int:
        return 4 * self.dim

    def describe(self) -> dict[str, Any]:
        """The spec's settings plus what follows from them (dim, label rate), for stage records."""
        return {**self.spec.to_dict(), "dim": self.dim, "label_rate": self.frame_rate}

    def num_frames(self, n_samples: int) -> int:
        """Frames (= labels) for an utterance of ``n_samples`` 16 kHz samples."""
        if self.model is None:
            return mfcc_mod.num_frames(int(n_samples))
        return max(0, int(self.model.num_frames(int(n_samples))))

    def extract_tensors(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """list of (samples_i,) float32 -> list of (frames_i, D) float32 tensors (on the device)."""
        if not wavs:
            return []
        if self.model is None:
            return [f.float() for f in mfcc_mod.mfcc_batch([w.float().cpu() for w in wavs])]
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
        return load(url, normalize=self.spec.do_normalize)

    def iter_manifest(self, manifest, indices: Sequence[int], as_tensors: bool = False,
                      by_length: bool = False) -> Iterator[tuple[list[int], list]]:
        """Yield ``(indices, features)`` batch by batch over ``indices`` of ``manifest``, ``batch_size``
        utterances at a time; a bad file raises AudioError naming it.

        In the given order, or with ``by_length`` shortest first (ties in the given order), so a padded
        model batch holds utterances of about one length: a batch of 8 computes up to its longest
        utterance, which in manifest order cost the audio->labels pass 1.6x (docs/benchmarks.md).
        MFCC batches are never padded, so ``by_length`` only matters for model features; the
        consumer puts results back by index."""
        bs = self.spec.batch_size
        if by_length and self.model is not None:
            indices = sorted(indices, key=lambda i: int(manifest[i].n_samples))
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
