"""The ML-SUPERB downstream model on frozen features, trained with CTC, decoded greedily.

As ML-SUPERB's espnet recipe (``egs2/ml_superb/asr1``, s3prl frontend with ``multilayer_feature``):
a learned softmax-weighted sum of the upstream's hidden states (weights start equal) → SpecAugment
(training only; 2 frequency masks up to 27/80 of the feature dimension, 2 time masks up to 5 % of the
utterance; torchaudio's ``mask_along_axis``; no time warping) → utterance mean normalisation
(espnet ``UtteranceMVN`` defaults: means, not variances; ``norm_vars`` switches variances on) → linear
projection to 80 dims → 2-layer conv subsampling to 40 ms frames (espnet ``conv2d2`` for 20 ms upstreams,
``conv2d`` for 10 ms ones such as FBANK) → sinusoidal positions → a 2-block pre-LN transformer encoder
(256-d, 8 heads, FFN 1024, dropout 0.1; ``torch.nn.TransformerEncoderLayer``) → linear CTC output.
Adam, lr 1e-4. The dev loss is checked every ``eval_interval`` steps and the best weights are kept.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from mhubert.errors import BadInput

log = logging.getLogger(__name__)

OUTPUT_FRAME_SECONDS = 0.04


@dataclass(frozen=True)
class ProbeConfig:
    max_steps: int = 3000
    lr: float = 1e-4
    batch_size: int = 8
    proj_dim: int = 80
    d_model: int = 256
    heads: int = 8
    ffn_dim: int = 1024
    blocks: int = 2
    dropout: float = 0.1
    freq_masks: int = 2
    freq_mask_ratio: float = 27 / 80
    time_masks: int = 2
    time_mask_ratio: float = 0.05
    norm_vars: bool = False
    eval_interval: int = 0          # 0: max_steps // 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BadInput("max_steps, batch_size and lr must be positive")
        if self.d_model % self.heads:
            raise BadInput(f"d_model {self.d_model} is not divisible by heads {self.heads}")


def subsampling_factor(frame_rate: float) -> int:
    """4 for 10 ms upstreams (FBANK), 2 for 20 ms ones (HuBERT): 40 ms output frames."""
    return 4 if frame_rate * OUTPUT_FRAME_SECONDS >= 3 else 2


class ConvSubsampling(nn.Module):
    """espnet ``Conv2dSubsampling`` (factor 4) / ``Conv2dSubsampling2`` (factor 2): two 3x3 convs."""

    def __init__(self, idim: int, odim: int, factor: int):
        super().__init__()
        if factor not in (2, 4):
            raise BadInput(f"subsampling factor must be 2 or 4, got {factor}")
        self.stride2 = 2 if factor == 4 else 1
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU(),
                                  nn.Conv2d(odim, odim, 3, self.stride2), nn.ReLU())
        f = (idim - 3) // 2 + 1
        f = (f - 3) // self.stride2 + 1
        self.out = nn.Linear(odim * f, odim)

    def lengths(self, n: torch.Tensor) -> torch.Tensor:
        n = torch.div(n - 3, 2, rounding_mode="floor") + 1
        return torch.div(n - 3, self.stride2, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x[:, None])                         # (B, C, T', F')
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f))


def sinusoids(t: int, d: int) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def valid_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class Probe(nn.Module):
    """Weighted layer sum → SpecAugment → utterance MVN → Linear(D, 80) → conv subsampling →
    transformer encoder → CTC logits."""

    def __init__(self, num_states: int, dim: int, vocab_size: int, factor: int, cfg: ProbeConfig):
        super().__init__()
        self.cfg = cfg
        self.layer_logits = nn.Parameter(torch.zeros(num_states))
        self.proj = nn.Linear(dim, cfg.proj_dim)
        self.subsample = ConvSubsampling(cfg.proj_dim, cfg.d_model, factor)
        self.pos_dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ffn_dim, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.after_norm = nn.LayerNorm(cfg.d_model)
        self.ctc = nn.Linear(cfg.d_model, vocab_size)

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def _specaug(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = x.clone()
        for b in range(x.shape[0]):
            n = int(valid[b].sum())
            xb = x[b, :n].T[None]                      # (1, D, T)
            for _ in range(cfg.freq_masks):
                xb = AF.mask_along_axis(xb, int(cfg.freq_mask_ratio * xb.shape[1]), 0.0, axis=1)
            for _ in range(cfg.time_masks):
                width = int(cfg.time_mask_ratio * n)
                if width > 0:
                    xb = AF.mask_along_axis(xb, width, 0.0, axis=2)
            x[b, :n] = xb[0].T
        return x

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, L, T, D), lengths (B,) -> log-probs (B, T', V), output lengths (B,)."""
        x = torch.einsum("bltd,l->btd", states, self.layer_weights())
        valid = valid_mask(lengths, x.shape[1])
        if self.training:
            x = self._specaug(x, valid)
        m = valid[..., None].float()
        n = m.sum(1, keepdim=True).clamp_min(1.0)
        mean = (x * m).sum(1, keepdim=True) / n
        x = x - mean
        if self.cfg.norm_vars:
            std = ((x * m).pow(2).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-5)
            x = x / std
        x = self.proj(x * m)
        x = self.subsample(x)
        out_len = self.subsample.lengths(lengths).clamp(min=1, max=x.shape[1])
        x = self.pos_dropout(x * math.sqrt(self.cfg.d_model) + sinusoids(x.shape[1], x.shape[2]).to(x))
        x = self.encoder(x, src_key_padding_mask=~valid_mask(out_len, x.shape[1]))
        return F.log_softmax(self.ctc(self.after_norm(x)), dim=-1), out_len


def min_frames(factor: int) -> int:
    """Shortest input (upstream frames) the subsampling accepts."""
    return 7 if factor == 4 else 5


def _batch(feats: Sequence[torch.Tensor], idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([feats[i].shape[1] for i in idx])
    t = int(lengths.max())
    out = torch.zeros(len(idx), feats[idx[0]].shape[0], t, feats[idx[0]].shape[2])
    for j, i in enumerate(idx):
        out[j, :, : feats[i].shape[1]] = feats[i].float()
    return out, lengths


def _pad_features(feats: Sequence[torch.Tensor], factor: int) -> list[torch.Tensor]:
    need = min_frames(factor)
    return [f if f.shape[1] >= need else F.pad(f, (0, 0, 0, need - f.shape[1])) for f in feats]


def greedy(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path: argmax per frame, repeats merged, blanks (0) removed."""
    out = []
    best = log_probs.argmax(-1)
    for b in range(best.shape[0]):
        ids = torch.unique_consecutive(best[b, : int(lengths[b])]).tolist()
        out.append([i for i in ids if i != 0])
    return out


@dataclass
class ProbeResult:
    layer_weights: list[float]
    steps: int
    best_step: int
    predictions: list[list[int]]
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    dev_loss: list[tuple[int, float]] = field(default_factory=list)


def _ctc_loss(model: Probe, feats: Sequence[torch.Tensor], targets: Sequence[Sequence[int]],
              idx: Sequence[int]) -> torch.Tensor:
    dev = next(model.parameters()).device
    x, lengths = _batch(feats, idx)
    log_probs, out_len = model(x.to(dev), lengths.to(dev))
    tgt = [torch.tensor(targets[i], dtype=torch.long) for i in idx]
    return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(tgt).to(dev), out_len,
                      torch.tensor([len(t) for t in tgt], device=dev), blank=0, reduction="sum",
                      zero_infinity=True) / len(idx)


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(n, s + size))) for s in range(0, n, size)]


@torch.no_grad()
def _dev_loss(model: Probe, feats, targets, batch_size: int) -> float:
    model.eval()
    total = sum(float(_ctc_loss(model, feats, targets, c)) * len(c) for c in _chunks(len(feats), batch_size))
    model.train()
    return total / max(1, len(feats))


@torch.no_grad()
def decode(model: Probe, feats: Sequence[torch.Tensor], batch_size: int) -> list[list[int]]:
    model.eval()
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[1])
    out: dict[int, list[int]] = {}
    for c in _chunks(len(order), batch_size):
        idx = [order[j] for j in c]
        x, lengths = _batch(feats, idx)
        dev = next(model.parameters()).device
        log_probs, out_len = model(x.to(dev), lengths.to(dev))
        for i, hyp in zip(idx, greedy(log_probs.cpu(), out_len.cpu()), strict=True):
            out[i] = hyp
    return [out[i] for i in range(len(feats))]


def train_probe(train_feats: Sequence[torch.Tensor], train_targets: Sequence[Sequence[int]],
                dev_feats: Sequence[torch.Tensor], dev_targets: Sequence[Sequence[int]],
                test_feats: Sequence[torch.Tensor], vocab_size: int, frame_rate: float,
                cfg: ProbeConfig, device: str | torch.device = "cpu") -> ProbeResult:
    """Train on (features (L, T, D), target ids) pairs on ``device``; return the test set's greedy
    decodings with the weights of the best dev loss."""
    if not train_feats or not dev_feats:
        raise BadInput("the probe needs training and dev utterances")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    factor = subsampling_factor(frame_rate)
    train_feats, dev_feats, test_feats = (_pad_features(f, factor) for f in (train_feats, dev_feats,
                                                                              test_feats))
    num_states, dim = train_feats[0].shape[0], train_feats[0].shape[2]
    model = Probe(num_states, dim, vocab_size, factor, cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    interval = cfg.eval_interval or max(1, cfg.max_steps // 10)
    result = ProbeResult([], cfg.max_steps, 0, [])
    best, best_state = math.inf, copy.deepcopy(model.state_dict())
    model.train()
    bs = min(cfg.batch_size, len(train_feats))
    for step in range(1, cfg.max_steps + 1):
        idx = rng.choice(len(train_feats), size=bs, replace=False).tolist()
        loss = _ctc_loss(model, train_feats, train_targets, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % interval == 0 or step == cfg.max_steps:
            dev = _dev_loss(model, dev_feats, dev_targets, cfg.batch_size)
            result.train_loss.append((step, loss.item()))
            result.dev_loss.append((step, dev))
            log.info("probe step %d: train loss %.3f, dev loss %.3f", step, loss.item(), dev)
            if dev < best:
                best, result.best_step = dev, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    result.layer_weights = [round(float(w), 6) for w in model.layer_weights().detach().cpu()]
    result.predictions = decode(model, test_feats, cfg.batch_size)
    return result
