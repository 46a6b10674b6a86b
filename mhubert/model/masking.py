"""Span masking for HuBERT pretraining, computed on the device with torch (no numpy, no host sync).

Statistics follow fairseq's ``compute_mask_indices`` (``mask_selection=static``, overlap allowed):
for an utterance of ``T`` valid frames, ``n = max(min_masks, int(mask_prob * T / L + u))`` spans
with ``u ~ U[0, 1)``; span starts are ``n`` *distinct* positions drawn uniformly from
``[0, T - L)`` (fairseq's ``np.random.choice(T - L, n, replace=False)``; when that range is too
small it uses ``[0, n + 1)``); each span covers ``L`` frames, clipped to ``T``. Overlapping spans
merge, so the masked fraction is below ``mask_prob`` (about 0.55 of the frames for 0.8 / 10).
fairseq additionally trims every row to the batch's smallest masked count
(``require_same_masks``); that is optional here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _keep_lowest(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """bool (B, T): True at the ``k[b]`` positions of row b with the lowest scores."""
    order = scores.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks < k[:, None]


def compute_span_mask(shape: tuple[int, int], frame_lengths: torch.Tensor | None, mask_prob: float,
                      mask_length: int, min_masks: int = 2,
                      generator: torch.Generator | None = None,
                      require_same_masks: bool = False,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Span mask, bool (B, T); never True at t >= frame_lengths[b].

    shape: (B, T) frames. frame_lengths: (B,) valid frames per row (None: all T). The mask lives on
    ``frame_lengths.device`` (or ``device``); ``generator`` must be on that device.
    """
    bsz, tmax = shape
    if device is None:
        device = frame_lengths.device if frame_lengths is not None else torch.device("cpu")
    if frame_lengths is None:
        frame_lengths = torch.full((bsz,), tmax, dtype=torch.long, device=device)
    lengths = frame_lengths.to(device=device, dtype=torch.long).clamp(max=tmax)
    if bsz == 0 or tmax == 0 or mask_prob <= 0:
        return torch.zeros(bsz, tmax, dtype=torch.bool, device=device)

    u = torch.rand(bsz, device=device, generator=generator)
    n = torch.floor(mask_prob * lengths / mask_length + u).long().clamp(min=min_masks)
    # fairseq: if T - L <= n the start range becomes [0, n + 1) (then clipped to the row below)
    n_cand = torch.where(lengths - mask_length <= n, n + 1, lengths - mask_length)
    n = torch.minimum(n, n_cand).clamp(min=0)
    pos = torch.arange(tmax, device=device)
    scores = torch.rand(bsz, tmax, device=device, generator=generator)
    scores = scores.masked_fill(pos[None, :] >= n_cand[:, None], 2.0)  # never chosen before valid ones
    starts = _keep_lowest(scores, n) & (pos[None, :] < n_cand[:, None])
    # a frame is masked when a span started within the previous L frames
    spans = F.max_pool1d(F.pad(starts[:, None].float(), (mask_length - 1, 0)), mask_length, stride=1)
    mask = spans[:, 0].bool() & (pos[None, :] < lengths[:, None])
    if require_same_masks and bsz > 1:
        counts = mask.sum(dim=1)
        scores = torch.rand(bsz, tmax, device=device, generator=generator).masked_fill(~mask, 2.0)
        mask = _keep_lowest(scores, counts.min().expand(bsz)) & mask
    return mask
