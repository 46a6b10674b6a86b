"""HuBERT's masked-prediction loss and accuracies (fairseq ``hubert_criterion``), from what the
pretraining head returns (:class:`PretrainOutput`).

    loss = (pred_masked_weight * CE_masked_sum + pred_nomask_weight * CE_unmasked_sum) / n_masked
           + feature_pen_weight * features_pen

fairseq divides the weighted sums by ``sample_size`` = the number of masked frames and adds
``feature_pen_weight * features_pen * sample_size`` before that division: the same number.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mhubert.model.config import HubertConfig


class PretrainOutput(NamedTuple):
    """What the pretraining head computes and the loss needs. B batch, T frames, K classes.

    ``logits`` (B, T, K) float32 cosine similarities / logit_temp; ``targets`` (B, T) long (<0:
    no label); ``masked`` / ``unmasked`` (B, T) bool: scored frames inside / outside the mask;
    ``features_pen``: mean squared conv feature (scalar). A tuple, so DDP finds its tensors.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    masked: torch.Tensor
    unmasked: torch.Tensor
    features_pen: torch.Tensor


def cosine_logits(proj: torch.Tensor, label_embs: torch.Tensor, logit_temp: float) -> torch.Tensor:
    """(B, T, F) projections x (K, F) label embeddings -> (B, T, K) cosine / ``logit_temp`` (fp32;
    fairseq ``compute_nce`` over all classes)."""
    p = F.normalize(proj.float(), dim=-1, eps=1e-8)
    return p @ F.normalize(label_embs.float(), dim=-1, eps=1e-8).t() / logit_temp


def pretrain_loss(out: PretrainOutput, cfg: HubertConfig) -> dict[str, torch.Tensor]:
    """Scalars: ``loss`` (what is back-propagated), ``loss_m`` (CE sum over masked frames),
    ``correct_m``/``count_m`` and ``correct_u``/``count_u`` (argmax hits and frames, masked and
    unmasked), ``features_pen``, ``sample_size`` (= ``count_m``)."""
    ce = F.cross_entropy(out.logits.transpose(1, 2), out.targets.clamp(min=0), reduction="none")
    m_sel, u_sel = out.masked, out.unmasked
    count_m = m_sel.sum()
    loss_m = (ce * m_sel).sum()
    weighted = cfg.pred_masked_weight * loss_m
    if cfg.pred_nomask_weight > 0:
        weighted = weighted + cfg.pred_nomask_weight * (ce * u_sel).sum()
    loss = weighted / count_m.clamp(min=1) + cfg.feature_pen_weight * out.features_pen
    acc = accuracy_counts(out)
    return {"loss": loss, "loss_m": loss_m.detach(), **acc,
            "features_pen": out.features_pen.detach(), "sample_size": count_m}


def accuracy_counts(out: PretrainOutput) -> dict[str, torch.Tensor]:
    """Argmax hits and scored frames, masked (``_m``) and unmasked (``_u``)."""
    hit = out.logits.argmax(-1) == out.targets
    return {"correct_m": (hit & out.masked).sum(), "count_m": out.masked.sum(),
            "correct_u": (hit & out.unmasked).sum(), "count_u": out.unmasked.sum()}
