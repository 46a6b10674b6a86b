"""Train/dev/test splits per language, as ML-SUPERB builds them.

- training audio per language is a DURATION (``10min`` and ``1h`` are the paper's settings; any other,
  e.g. ``2min``, is allowed and marked non-standard): the shortest prefix of the shuffled training pool
  whose total reaches the budget (all of the pool when it is smaller; such languages are listed as
  ``short``);
- dev and test take ``dev_fraction``/``test_fraction`` of each language's audio, at most
  ``dev_max_seconds``/``test_max_seconds`` (10 minutes each, as ML-SUPERB's dev and test sets);
- when every utterance of a language has a speaker and there are at least 3 speakers, whole speakers go
  to test, dev and train, so the three share nobody; otherwise utterances are split one by one;
- training clips over 20 s are dropped (ML-SUPERB's limit);
- few-shot languages get exactly 5 training utterances (ML-SUPERB's few-shot setting).

Everything depends only on the seed and the utterances (not on their order in the manifest).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mhubert.errors import BadInput

STANDARD_SECONDS = {600.0: "10min", 3600.0: "1h"}
MAX_TRAIN_CLIP_SECONDS = 20.0
FEW_SHOT_UTTERANCES = 5
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)\s*$")


def parse_duration(label: str) -> float:
    """``10min`` -> 600.0, ``1h`` -> 3600.0, ``90s`` -> 90.0; BadInput otherwise."""
    m = _DURATION.match(str(label))
    if not m:
        raise BadInput(f"training duration must look like 10min, 1h or 90s, got {label!r}")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise BadInput(f"training duration must be positive, got {label!r}")
    return seconds


def is_standard(label: str) -> bool:
    """True for the paper's two settings (10 minutes, 1 hour per language), however spelled."""
    return parse_duration(label) in STANDARD_SECONDS


@dataclass(frozen=True)
class SplitConfig:
    train_per_lang: str = "10min"
    dev_fraction: float = 0.1
    test_fraction: float = 0.2
    dev_max_seconds: float = 600.0
    test_max_seconds: float = 600.0
    max_train_clip_seconds: float = MAX_TRAIN_CLIP_SECONDS
    few_shot: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        parse_duration(self.train_per_lang)
        for name in ("dev_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 < v < 0.5:
                raise BadInput(f"{name} must be in (0, 0.5), got {v}")
        if self.dev_max_seconds <= 0 or self.test_max_seconds <= 0 or self.max_train_clip_seconds <= 0:
            raise BadInput("dev_max_seconds, test_max_seconds and max_train_clip_seconds must be positive")

    @property
    def train_seconds(self) -> float:
        return parse_duration(self.train_per_lang)


@dataclass
class Splits:
    """Indices into the utterance list given to :func:`make_splits`, sorted."""

    train: list[int] = field(default_factory=list)
    dev: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)
    speaker_disjoint: dict[str, bool] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    dropped_long: dict[str, int] = field(default_factory=dict)
    short: list[str] = field(default_factory=list)
    few_shot: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _rng(seed: int, lang: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(lang.encode())])


def _take(groups: list[list[int]], secs: np.ndarray, target: float, keep: int) -> tuple[list[int], list]:
    """Pop groups from the front until their audio reaches ``target`` (at least one group), leaving
    at least ``keep`` groups."""
    taken: list[int] = []
    total = 0.0
    while groups and len(groups) > keep and (not taken or total < target):
        g = groups.pop(0)
        taken += g
        total += float(secs[g].sum())
    return taken, groups


def make_splits(langs: Sequence[str], seconds: Sequence[float], speakers: Sequence[str | None],
                cfg: SplitConfig) -> Splits:
    """Split utterances (given by parallel lists of language, duration and speaker) per language."""
    if not (len(langs) == len(seconds) == len(speakers)):
        raise BadInput("langs, seconds and speakers must have the same length")
    secs = np.asarray(seconds, dtype=np.float64)
    unknown = sorted(set(cfg.few_shot) - set(langs))
    if unknown:
        raise BadInput(f"few-shot languages {unknown} are not in the manifest")
    out = Splits(few_shot=sorted(cfg.few_shot))
    for lang in sorted(set(langs)):
        rng = _rng(cfg.seed, lang)
        idx = [i for i, x in enumerate(langs) if x == lang]
        spk = [speakers[i] for i in idx]
        by_speaker = all(spk) and len(set(spk)) >= 3
        if by_speaker:
            names = sorted(set(spk))
            order = [names[j] for j in rng.permutation(len(names))]
            groups = [[i for i in idx if speakers[i] == s] for s in order]
        else:
            groups = [[idx[j]] for j in rng.permutation(len(idx))]
        if len(groups) < 3:
            raise BadInput(f"language {lang!r} has {len(idx)} utterance(s); need at least 3 "
                           f"(train, dev, test)")
        total = float(secs[idx].sum())
        test, groups = _take(groups, secs, min(cfg.test_fraction * total, cfg.test_max_seconds), keep=2)
        dev, groups = _take(groups, secs, min(cfg.dev_fraction * total, cfg.dev_max_seconds), keep=1)
        pool = [i for g in groups for i in g]
        long = [i for i in pool if secs[i] > cfg.max_train_clip_seconds]
        pool = [pool[j] for j in rng.permutation(len(pool)) if secs[pool[j]] <= cfg.max_train_clip_seconds]
        if not pool:
            raise BadInput(f"language {lang!r} has no training clip of at most "
                           f"{cfg.max_train_clip_seconds:g} s")
        if lang in cfg.few_shot:
            train = pool[:FEW_SHOT_UTTERANCES]
            if len(train) < FEW_SHOT_UTTERANCES:
                out.short.append(lang)
        else:
            cum = np.cumsum(secs[pool])
            n = int(np.searchsorted(cum, cfg.train_seconds - 1e-9)) + 1
            train = pool[:n]
            if cum[-1] < cfg.train_seconds - 1e-9:
                out.short.append(lang)
        out.train += train
        out.dev += dev
        out.test += test
        out.speaker_disjoint[lang] = by_speaker
        out.train_seconds[lang] = round(float(secs[train].sum()), 3)
        out.dropped_long[lang] = len(long)
    out.train.sort()
    out.dev.sort()
    out.test.sort()
    return out
