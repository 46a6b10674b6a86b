"""Span masks: statistics against a numpy re-enactment of fairseq's compute_mask_indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mhubert.model.masking import compute_span_mask


def fairseq_static_mask(rng: np.random.Generator, lengths: list[int], tmax: int, p: float, span: int,
                        min_masks: int) -> np.ndarray:
    """fairseq ``compute_mask_indices`` (static, overlap allowed, padding mask given), one row at a
    time, without its ``require_same_masks`` trimming."""
    mask = np.zeros((len(lengths), tmax), dtype=bool)
    for i, sz in enumerate(lengths):
        num_mask = max(min_masks, int(p * sz / float(span) + rng.random()))
        min_len = span
        if sz - min_len <= num_mask:
            min_len = sz - num_mask - 1
        starts = rng.choice(sz - min_len, num_mask, replace=False)
        idc = np.asarray([s + o for s in starts for o in range(span)])
        mask[i, np.unique(idc[idc < sz])] = True
    return mask


@pytest.mark.parametrize("p, span, lengths", [(0.8, 10, [250, 180]), (0.65, 5, [120, 61])])
def test_masked_fraction_and_profile_match_fairseq(p, span, lengths):
    rows = 3000
    lens = lengths * (rows // len(lengths))
    tmax = max(lengths)
    g = torch.Generator().manual_seed(0)
    ours = compute_span_mask((len(lens), tmax), torch.tensor(lens), p, span, 2, generator=g).numpy()
    ref = fairseq_static_mask(np.random.default_rng(0), lens, tmax, p, span, 2)
    for j, t in enumerate(lengths):
        a, b = ours[j::len(lengths), :t], ref[j::len(lengths), :t]
        assert not ours[j::len(lengths), t:].any()
        # mean masked fraction, its spread, and where the masked frames fall
        assert abs(a.mean() - b.mean()) < 0.01
        assert abs(a.sum(1).std() - b.sum(1).std()) < 0.15 * b.sum(1).std() + 0.5
        bins = np.array_split(np.arange(t), t // 10)
        prof_a = np.array([a[:, i].mean() for i in bins])
        prof_b = np.array([b[:, i].mean() for i in bins])
        assert np.abs(prof_a - prof_b).max() < 0.04
        assert not a[:, -1].any() and not b[:, -1].any()  # starts < T - L: the last frame is never masked
    # about 1 - (1 - 1/T)^(n L) of the frames end up masked: 0.55 for 0.8 / 10
    if p == 0.8:
        t, n = lengths[0], int(0.8 * lengths[0] / 10)
        assert abs(ours[0::2, :t].mean() - (1 - (1 - 1 / t) ** (n * 10))) < 0.04


def test_span_count_and_distinct_starts():
    # n = max(min_masks, int(p T / L + u)): p T / L = 3 exactly, so every row has 3 distinct starts
    g = torch.Generator().manual_seed(1)
    mask = compute_span_mask((500, 300), torch.full((500,), 300), 0.1, 10, 2, generator=g)
    counts = mask.sum(1)
    assert counts.min() >= 11 and counts.max() <= 30  # 3 distinct starts: at least 11 frames
    # spans that do not touch come in runs of exactly L frames
    m = torch.nn.functional.pad(mask.int(), (1, 1))
    starts = (m[:, 1:] - m[:, :-1] == 1).sum(1)
    assert starts.max() <= 3
    assert (counts[starts == 3] == 30).all()
    # min_masks wins when p T / L is small
    mask = compute_span_mask((200, 300), None, 0.01, 10, 2, generator=g)
    assert (mask.sum(1) >= 11).all() and (mask.sum(1) <= 20).all()


def test_short_rows_and_padding():
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([12, 3, 40])
    mask = compute_span_mask((3, 40), lengths, 0.8, 10, 2, generator=g)
    assert mask.dtype == torch.bool and mask.shape == (3, 40)
    for b, t in enumerate(lengths.tolist()):
        assert not mask[b, t:].any() and mask[b, :t].any()


def test_generator_reproducible_and_require_same_masks():
    lengths = torch.tensor([100, 80, 60, 100])
    a = compute_span_mask((4, 100), lengths, 0.5, 10, 2, generator=torch.Generator().manual_seed(3))
    b = compute_span_mask((4, 100), lengths, 0.5, 10, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = compute_span_mask((4, 100), lengths, 0.5, 10, 2, generator=torch.Generator().manual_seed(3),
                          require_same_masks=True)
    assert len(set(c.sum(1).tolist())) == 1 and c.sum() <= a.sum()
    assert not (c & ~a).any()
    assert not compute_span_mask((4, 100), lengths, 0.0, 10, 2).any()
