"""What the LID head is trained on: per-utterance layer-mean-pooled encoder features, their cache
and the held-out split.

Every utterance becomes its per-layer mean-pooled vectors (num_layers + 1, D). Because the weighted
layer sum and mean pooling commute, training the head on these vectors equals training it on the
frame sequences. The extraction options (:class:`ExtractionOptions`) are stored in the head file, so
evaluation and serving pool exactly as training did.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.lid.head import mean_pool

log = logging.getLogger(__name__)

FEATURES_FILE = "features.pt"
SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class ExtractionOptions:
    """How audio becomes pooled features (recorded in ``head.pt``)."""

    max_seconds: float = 30.0      # longer utterances are cut (the first seconds)
    normalize_audio: bool = True   # fairseq normalize=True (as in pretraining)

    def __post_init__(self) -> None:
        if self.max_seconds <= 0:
            raise BadInput(f"max_seconds must be positive, got {self.max_seconds}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ExtractionOptions:
        d = d or {}
        return cls(**{k: d[k] for k in ("max_seconds", "normalize_audio") if k in d})


def stratified_split(langs: list[str], valid_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic per-language split: (train indices, valid indices), both sorted.

    Each language with at least 2 utterances gives round(n * fraction) (at least 1) to valid and
    keeps at least 1 for training.
    """
    rng = np.random.default_rng(seed)
    train: list[int] = []
    valid: list[int] = []
    for lang in sorted(set(langs)):
        idx = np.array([i for i, x in enumerate(langs) if x == lang])
        rng.shuffle(idx)
        n_valid = 0
        if valid_fraction > 0 and len(idx) >= 2:
            n_valid = min(len(idx) - 1, max(1, int(round(len(idx) * valid_fraction))))
        valid += idx[:n_valid].tolist()
        train += idx[n_valid:].tolist()
    return sorted(train), sorted(valid)


@torch.inference_mode()
def extract_pooled(model: torch.nn.Module, urls: list[str], opts: ExtractionOptions, batch_size: int = 8,
                   device: torch.device | str = "cpu", progress: bool = True) -> torch.Tensor:
    """Per-utterance layer-mean-pooled features (N, num_layers + 1, D), float32 on the CPU."""
    from mhubert.audio import load

    if batch_size < 1:
        raise BadInput(f"batch_size must be >= 1, got {batch_size}")
    model = model.eval().to(device)
    max_samples = int(opts.max_seconds * SAMPLE_RATE)
    out: list[torch.Tensor | None] = [None] * len(urls)
    batches = range(0, len(urls), batch_size)
    for start in tqdm(batches, desc="lid features", unit="batch", disable=not progress):
        idx = list(range(start, min(start + batch_size, len(urls))))
        wavs = [load(urls[i], SAMPLE_RATE, normalize=opts.normalize_audio)[:max_samples] for i in idx]
        lengths = torch.tensor([w.numel() for w in wavs])
        rf = model.cfg.receptive_field
        if int(lengths.min()) < rf:
            short = urls[idx[int(lengths.argmin())]]
            raise BadInput(f"{short} is shorter than one frame ({int(lengths.min())} samples < {rf})")
        batch = torch.zeros(len(wavs), int(lengths.max()))
        for j, w in enumerate(wavs):
            batch[j, : w.numel()] = w
        hidden = model.hidden_states(batch.to(device), lengths.to(device))
        pooled = mean_pool(hidden, model.frame_lengths(lengths).to(device)).float().cpu()
        for j, i in enumerate(idx):
            out[i] = pooled[j]
    return torch.stack(out)  # type: ignore[arg-type]


def model_identity(model_uri: str) -> str:
    """What identifies the model's weights (not only its URL, which a retrained run reuses, nor its
    marker's fingerprint, which only its config makes): the sha256 its committed marker records for
    the weights file, else the sha256 of that file."""
    from mhubert.artifacts import Model
    from mhubert.artifacts.marker import hash_url

    art = Model(model_uri)
    weights = ("model.safetensors", "pytorch_model.bin")
    if not model_uri.endswith(".pt") and art.is_committed():
        try:
            files = art.marker().files
        except BadInput:
            files = {}
        for name in weights:
            if name in files:
                return files[name].sha256
    for url in (model_uri, *(art.path(w) for w in weights)):
        fs, path = storage.get_fs(url)
        if fs.isfile(path):
            return hash_url(url).sha256
    raise BadInput(f"no model weights at {model_uri}")


def cache_key(model_id: str, urls: list[str], opts: ExtractionOptions) -> dict[str, Any]:
    return {"model": model_id, "urls": urls, **opts.to_dict()}


def cached_features(model_uri: str, urls: list[str], cache_url: str, opts: ExtractionOptions,
                    batch_size: int = 8, progress: bool = True) -> torch.Tensor:
    """``cache_url`` (a ``features.pt``) when it was made from the same model, audio and options;
    else extract and write it."""
    from mhubert.model import load_model

    key = cache_key(model_identity(model_uri), urls, opts)
    if storage.exists(cache_url):
        cached = torch.load(io.BytesIO(storage.read_bytes(cache_url)), weights_only=True)
        if cached.get("key") == key:
            log.info("using cached LID features %s", cache_url)
            return cached["features"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    feats = extract_pooled(load_model(model_uri), urls, opts, batch_size, device, progress)
    buf = io.BytesIO()
    torch.save({"key": key, "features": feats}, buf)
    storage.atomic_write(cache_url, buf.getvalue())
    return feats
