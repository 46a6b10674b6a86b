"""Trainer configuration: the ``train:`` preset section, and loading all three sections with overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mhubert.config import from_preset
from mhubert.errors import BadInput


@dataclass
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

    def validate(self) -> None:
        if self.max_update < 1 or self.update_freq < 1 or self.save_interval_updates < 1 \
                or self.log_interval < 1:
            raise BadInput("train.max_update, update_freq, save_interval_updates and log_interval "
                           "must be >= 1")
        if self.warmup_updates < 0 or self.lr <= 0:
            raise BadInput("train.lr must be > 0 and train.warmup_updates >= 0")


SECTIONS = ("model", "data", "train")


def split_overrides(items: list[str] | None, known: dict[str, set[str]]) -> dict[str, list[str]]:
    """Route ``section.key=value`` (or a bare ``key=value`` that only one section has) to its section."""
    out: dict[str, list[str]] = {s: [] for s in known}
    for item in items or []:
        if "=" not in item:
            raise BadInput(f"--set {item!r} must look like key=value (e.g. train.lr=1e-4)")
        key, value = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in known:
                raise BadInput(f"--set {item!r}: unknown section {section!r}; "
                               f"use one of {', '.join(known)}")
        else:
            owners = [s for s, names in known.items() if key in names]
            if len(owners) != 1:
                raise BadInput(f"--set {item!r}: " + (
                    f"ambiguous key, prefix a section ({', '.join(owners)})" if owners
                    else "unknown option"))
            section, name = owners[0], key
        out[section].append(f"{name}={value}")
    return out


def load_configs(preset: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """``{"model": HubertConfig, "data": DataConfig, "train": TrainConfig}`` from a preset + ``--set``."""
    from mhubert.data.dataset import DataConfig
    from mhubert.model import HubertConfig

    classes = {"model": HubertConfig, "data": DataConfig, "train": TrainConfig}
    known = {s: {f.name for f in dataclasses.fields(c)} for s, c in classes.items()}
    routed = split_overrides(overrides, known)
    cfgs = {s: from_preset(c, s, preset, routed[s]) for s, c in classes.items()}
    cfgs["train"].validate()
    return cfgs
