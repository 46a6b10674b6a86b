"""Train the LID head on frozen encoder features.

Features are extracted once (:mod:`mhubert.lid.features`, cached in ``<out>/features.pt``), then the
head is fitted full-batch with AdamW (seconds). The held-out split is deterministic and stratified by
language. The head directory is a committed :class:`mhubert.artifacts.LidHead`; a rerun with the same
model, manifest and options reuses it, one with others stops unless ``on_change="force"``.

    mhubert lid train --model s3://b/iter3/train/model --manifest s3://b/corpus/manifest.tsv --out s3://b/lid
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from mhubert.artifacts import LidHead, Manifest, decide
from mhubert.errors import BadInput
from mhubert.lid.features import (
    FEATURES_FILE,
    SPLIT_FILE,
    ExtractionOptions,
    cached_features,
    model_identity,
    stratified_split,
)
from mhubert.lid.head import LidClassifier, LidHeadConfig, save_head
from mhubert.lid.metrics import classification_report, write_report

log = logging.getLogger(__name__)


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

    @property
    def extraction(self) -> ExtractionOptions:
        return ExtractionOptions(max_seconds=self.max_seconds, normalize_audio=self.normalize_audio)


def fit_head(feats: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: LidTrainConfig) -> LidClassifier:
    """Full-batch AdamW on pooled features (N, L+1, D) with integer labels (N,)."""
    torch.manual_seed(cfg.seed)
    n_layers, dim = feats.shape[1] - 1, feats.shape[2]
    head = LidClassifier(LidHeadConfig(num_layers=n_layers, dim=dim, num_classes=num_classes))
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


def _manifest_identity(manifest_url: str) -> str:
    from mhubert.artifacts.marker import hash_url

    return hash_url(manifest_url).sha256


def lid_settings(model_uri: str, manifest_url: str, cfg: LidTrainConfig) -> tuple[dict, dict]:
    """``(settings, inputs)`` of :func:`train_lid` with these arguments (the head's fingerprint)."""
    settings = {"lid": asdict(cfg), "model": model_uri, "manifest": manifest_url}
    inputs = {"model": model_identity(model_uri), "manifest": _manifest_identity(manifest_url)}
    return settings, inputs


def train_lid(model_uri: str, manifest_url: str, out_dir: str, cfg: LidTrainConfig | None = None,
              on_change: str = "stop", progress: bool = True) -> dict:
    """Extract features, split, fit; write head.pt + labels.json + split.json + metrics.json and
    commit the :class:`LidHead`. Returns the held-out metrics (see
    :func:`mhubert.lid.metrics.classification_report`); a reused head returns its recorded ones."""
    cfg = cfg or LidTrainConfig()
    art = LidHead(out_dir)
    settings, inputs = lid_settings(model_uri, manifest_url, cfg)
    if decide(art, settings, inputs, on_change=on_change) == "reuse":
        log.info("%s: reused (same model, manifest and options)", out_dir)
        return art.read_json("metrics.json")
    manifest = Manifest.read(manifest_url)
    if len(manifest) == 0:
        raise BadInput(f"manifest {manifest_url} is empty")
    langs = [e.lang for e in manifest]
    labels = sorted(set(langs))
    if len(labels) < 2:
        raise BadInput(f"LID needs at least 2 languages; {manifest_url} has {labels}")
    urls = [manifest.url_of(i) for i in range(len(manifest))]
    feats = cached_features(model_uri, urls, art.path(FEATURES_FILE), cfg.extraction, cfg.batch_size,
                            progress)
    y = torch.tensor([labels.index(x) for x in langs])
    train_idx, valid_idx = stratified_split(langs, cfg.valid_fraction, cfg.seed)
    head = fit_head(feats[train_idx], y[train_idx], len(labels), cfg)
    save_head(head, labels, out_dir, extraction=cfg.extraction.to_dict())
    art.write_json(SPLIT_FILE, {"manifest": manifest_url, "train": train_idx, "valid": valid_idx})
    eval_idx = valid_idx or train_idx
    with torch.no_grad():
        pred = head(feats[eval_idx]).argmax(dim=-1)
    report = classification_report(y[eval_idx].tolist(), pred.tolist(), labels)
    report["split"] = "valid" if valid_idx else "train"
    report["config"] = asdict(cfg)
    report["layer_weights"] = head.layer_mix().tolist()
    write_report(report, out_dir)
    art.commit({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "split": report["split"],
                "labels": labels, "num_utterances": len(manifest)}, settings=settings, inputs=inputs)
    return report
