"""Train the LID head on frozen encoder features.

Features are extracted once: every utterance becomes its per-layer mean-pooled vectors
(num_layers + 1, D), cached in ``<out>/features.pt``. Because the weighted layer sum and mean pooling
commute, training the head on these vectors equals training it on the frame sequences, and takes
seconds (full-batch AdamW). The held-out split is deterministic and stratified by language.

    mhubert lid train --model s3://b/iter3/model --manifest s3://b/corpus/manifest.tsv --out s3://b/lid
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.lid.head import LidHead, LidHeadConfig, mean_pool, save_head

log = logging.getLogger(__name__)

FEATURES_FILE = "features.pt"
SPLIT_FILE = "split.json"


@dataclass
class LidTrainConfig:
    """Options of ``mhubert lid train`` (preset section ``lid``)."""

    valid_fraction: float = 0.2    # per language, held out for metrics.json
    epochs: int = 300              # full-batch steps
    lr: float = 0.01
    weight_decay: float = 0.0001
    seed: int = 0
    batch_size: int = 8            # utterances per feature-extraction forward pass
    max_seconds: float = 30.0      # longer utterances are cut (the first seconds)
    normalize_audio: bool = True   # fairseq normalize=True (as in pretraining)

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise BadInput(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_seconds <= 0:
            raise BadInput("epochs, batch_size, lr and max_seconds must be positive")


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
def extract_pooled(model: torch.nn.Module, urls: list[str], cfg: LidTrainConfig,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-utterance layer-mean-pooled features (N, num_layers + 1, D), float32 on the CPU."""
    from mhubert.audio import load

    model = model.eval().to(device)
    max_samples = int(cfg.max_seconds * 16000)
    out: list[torch.Tensor | None] = [None] * len(urls)
    for start in tqdm(range(0, len(urls), cfg.batch_size), desc="lid features", unit="batch"):
        idx = list(range(start, min(start + cfg.batch_size, len(urls))))
        wavs = [load(urls[i], 16000, normalize=cfg.normalize_audio)[:max_samples] for i in idx]
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


def fit_head(feats: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: LidTrainConfig) -> LidHead:
    """Full-batch AdamW on pooled features (N, L+1, D) with integer labels (N,)."""
    torch.manual_seed(cfg.seed)
    n_layers, dim = feats.shape[1] - 1, feats.shape[2]
    head = LidHead(LidHeadConfig(num_layers=n_layers, dim=dim, num_classes=num_classes))
    head.mean.copy_(feats.mean(dim=0))
    head.std.copy_(feats.std(dim=0, unbiased=False).clamp(min=1e-5) if len(feats) > 1
                   else torch.ones_like(head.std))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    head.train()
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        loss.backward()
        opt.step()
    log.info("LID head trained: final loss %.4f", float(loss.detach()))
    return head.eval()


def _cached_features(model_uri: str, manifest_url: str, urls: list[str], out_dir: str,
                     cfg: LidTrainConfig) -> torch.Tensor:
    """Load ``features.pt`` when it was made from the same model, audio and options; else extract."""
    from mhubert.model import load_model

    cache_url = storage.join(out_dir, FEATURES_FILE)
    key = {"model": model_uri, "urls": urls, "max_seconds": cfg.max_seconds,
           "normalize_audio": cfg.normalize_audio}
    if storage.exists(cache_url):
        cached = torch.load(io.BytesIO(storage.read_bytes(cache_url)), weights_only=True)
        if cached.get("key") == key:
            log.info("using cached LID features %s", cache_url)
            return cached["features"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    feats = extract_pooled(load_model(model_uri), urls, cfg, device)
    buf = io.BytesIO()
    torch.save({"key": key, "features": feats}, buf)
    storage.atomic_write(cache_url, buf.getvalue())
    return feats


def train_lid(model_uri: str, manifest_url: str, out_dir: str, cfg: LidTrainConfig | None = None) -> dict:
    """Extract features, split, fit, write head.pt + labels.json + split.json + metrics.json + _SUCCESS.

    Returns the held-out metrics (see :func:`mhubert.lid.evaluate.classification_report`).
    """
    from mhubert.corpus.manifest import Manifest
    from mhubert.lid.evaluate import classification_report, write_report

    cfg = cfg or LidTrainConfig()
    manifest = Manifest.read(manifest_url)
    if len(manifest) == 0:
        raise BadInput(f"manifest {manifest_url} is empty")
    langs = [e.lang for e in manifest]
    labels = sorted(set(langs))
    if len(labels) < 2:
        raise BadInput(f"LID needs at least 2 languages; {manifest_url} has {labels}")
    urls = [manifest.url_of(i) for i in range(len(manifest))]
    feats = _cached_features(model_uri, manifest_url, urls, out_dir, cfg)
    y = torch.tensor([labels.index(x) for x in langs])
    train_idx, valid_idx = stratified_split(langs, cfg.valid_fraction, cfg.seed)
    head = fit_head(feats[train_idx], y[train_idx], len(labels), cfg)
    save_head(head, labels, out_dir)
    storage.atomic_write_json(storage.join(out_dir, SPLIT_FILE),
                              {"manifest": manifest_url, "train": train_idx, "valid": valid_idx})
    eval_idx = valid_idx or train_idx
    with torch.no_grad():
        pred = head(feats[eval_idx]).argmax(dim=-1)
    report = classification_report(y[eval_idx].tolist(), pred.tolist(), labels)
    report["split"] = "valid" if valid_idx else "train"
    report["config"] = asdict(cfg)
    report["layer_weights"] = head.layer_mix().tolist()
    write_report(report, out_dir)
    storage.write_marker(out_dir, {"model": model_uri, "manifest": manifest_url, "labels": labels})
    return report
