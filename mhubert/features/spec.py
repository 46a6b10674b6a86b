"""What to extract from audio (``FeatureSpec``): light, so command lines build one without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mhubert.errors import BadInput

SOURCES = ("mfcc", "hubert")


@dataclass
class FeatureSpec:
    """``mfcc`` (39-d, 10 ms hop) or ``hubert`` (layer ``layer`` of ``model``, a URL: a transformers
    directory or a trainer ``.pt``). ``normalize=None`` picks the recipe's default: raw waveform for
    MFCC (fairseq ``dump_mfcc_feature.py``), layer-normed for hubert (mHuBERT-147 ``normalize:
    true``). ``batch_size`` and ``device`` say how to run, not what comes out."""

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
    def do_normalize(self) -> bool:
        return (self.source == "hubert") if self.normalize is None else bool(self.normalize)

    def to_dict(self) -> dict[str, Any]:
        """What the features depend on (the settings a stage's fingerprint takes)."""
        return {"source": self.source, "model": self.model,
                "layer": self.layer if self.source == "hubert" else 0, "normalize": self.do_normalize}
