"""The training recipe: the ``model:``, ``data:`` and ``train:`` preset sections as one typed object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mhubert.config import load_sections
from mhubert.data.dataset import DataConfig
from mhubert.errors import BadInput
from mhubert.model.config import HubertConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run control. Counts are optimizer updates unless named otherwise."""

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01        # decoupled (AdamW)
    warmup_updates: int = 32_000
    max_update: int = 2_000_000
    clip_norm: float = 10.0
    update_freq: int = 1              # gradient accumulation: batches per update
    seed: int = 1337
    save_interval_updates: int = 25_000
    log_interval: int = 200
    compile: bool = False             # torch.compile the model
    bf16: bool = True                 # bf16 autocast (CUDA only)
    keep_checkpoints: int = 0         # keep the newest N checkpoints (0: all)

    def __post_init__(self) -> None:
        for name in ("max_update", "update_freq", "save_interval_updates", "log_interval"):
            if getattr(self, name) < 1:
                raise BadInput(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise BadInput(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_updates < 0:
            raise BadInput(f"train.warmup_updates must be >= 0, got {self.warmup_updates}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise BadInput(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if self.eps <= 0 or self.weight_decay < 0 or self.clip_norm <= 0:
            raise BadInput("train.eps and train.clip_norm must be > 0 and train.weight_decay >= 0")
        if self.keep_checkpoints < 0:
            raise BadInput(f"train.keep_checkpoints must be >= 0, got {self.keep_checkpoints}")


# fields that change how a run is watched, kept or fed, never its weights (not in its fingerprint)
WATCH_ONLY = {"train": ("log_interval", "save_interval_updates", "keep_checkpoints"),
              "data": ("num_workers", "io_threads", "prefetch_batches")}


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a run trains: the model, the data pipeline, the optimisation."""

    model: HubertConfig
    data: DataConfig
    train: TrainConfig

    SECTIONS = {"model": HubertConfig, "data": DataConfig, "train": TrainConfig}

    @classmethod
    def load(cls, preset: str = "base", overrides: list[str] | None = None) -> Recipe:
        """From a preset (name or YAML URL) plus ``--set section.key=value`` overrides."""
        return cls(**load_sections(preset, cls.SECTIONS, overrides))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"model": ..., "data": ..., "train": ...}``."""
        return {"model": self.model.to_dict(), "data": dataclasses.asdict(self.data),
                "train": {**dataclasses.asdict(self.train), "betas": list(self.train.betas)}}

    def settings(self) -> dict[str, Any]:
        """What changes the trained weights (the run's fingerprint): every field but those that
        only change how the run is watched or kept (logging, checkpoint cadence, decoding workers)."""
        d = self.to_dict()
        for section, keys in WATCH_ONLY.items():
            for k in keys:
                d[section].pop(k, None)
        return d
