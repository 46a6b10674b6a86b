"""Epoch planning, random-crop/pad collation and sharding, against the fairseq-fork rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mhubert.data.batching import (
    collate_crop,
    collate_pad,
    group,
    plan_epoch,
    shard,
    sort_by_length,
)
from mhubert.data.sampling import TwoLevelSampler
from mhubert.errors import BadInput


@pytest.fixture
def lengths():
    return np.random.default_rng(3).integers(32_000, 400_000, size=500)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_batches_respect_max_tokens_and_max_sample_size(lengths, mode):
    rng = np.random.default_rng(0)
    order = sort_by_length(np.arange(len(lengths)), lengths, rng)
    assert np.all(np.diff(lengths[order]) >= 0)                 # ascending by length
    batches = group(order, lengths, max_tokens=2_800_000, max_sample_size=250_000, mode=mode)
    assert np.array_equal(np.concatenate([b for b, _ in batches]), order)  # nothing lost or reordered
    for i, (idx, blen) in enumerate(batches):
        lens = np.minimum(lengths[idx], 250_000)
        expect = lens.min() if mode == "crop" else lens.max()
        assert blen == expect
        assert len(idx) * blen <= 2_800_000
        if i + 1 < len(batches):  # greedy: the next utterance would not have fitted
            nxt = min(lengths[batches[i + 1][0][0]], 250_000)
            grown = blen if mode == "crop" else max(blen, nxt)
            assert (len(idx) + 1) * grown > 2_800_000


def test_base_batches_hold_eleven_full_crops():
    lengths = np.full(100, 300_000)
    batches = group(np.arange(100), lengths, 2_800_000, 250_000)
    assert [len(b) for b, _ in batches[:-1]] == [11] * 9 and batches[0][1] == 250_000


def test_sharding_gives_disjoint_equal_count_batches():
    batches = [np.array([i]) for i in range(23)]
    shards = [shard(batches, r, 4) for r in range(4)]
    assert {len(s) for s in shards} == {5}
    flat = [int(b[0]) for s in shards for b in s]
    assert sorted(flat) == list(range(20))                       # disjoint, tail of 3 dropped
    assert [int(b[0]) for b in shards[1]] == [1, 5, 9, 13, 17]   # every world_size-th batch
    with pytest.raises(BadInput, match="batch"):
        shard(batches[:3], 0, 4)


def test_plan_epoch_covers_the_sampler_draw_and_changes_per_epoch(lengths):
    keys = [("en", "a")] * 400 + [("sw", "b")] * 100
    sampler = TwoLevelSampler(keys, alpha=0.7, beta=0.9, seed=5)
    kw = dict(seed=5, max_tokens=1_400_000, max_sample_size=250_000)
    plans = [plan_epoch(sampler.epoch(1), lengths, epoch=1, rank=r, world_size=2, **kw) for r in (0, 1)]
    assert len(plans[0]) == len(plans[1])
    again = plan_epoch(sampler.epoch(1), lengths, epoch=1, rank=0, world_size=2, **kw)
    assert again == plans[0]                                      # every rank computes the same plan
    whole = plan_epoch(sampler.epoch(1), lengths, epoch=1, **kw)
    drawn = sorted(i for b in whole for i in b.indices)
    assert drawn == sorted(sampler.epoch(1).tolist())             # the epoch is the sampler's draw
    mine = sorted(i for p in plans for b in p for i in b.indices)
    assert set(mine) <= set(drawn) and len(mine) <= len(drawn)
    other = plan_epoch(sampler.epoch(2), lengths, epoch=2, **kw)
    assert [b.indices for b in other] != [b.indices for b in whole]
    assert [b.index for b in whole] == list(range(len(whole)))


@pytest.mark.parametrize("label_rate", [100, 50])
def test_crop_labels_follow_the_audio_offset(label_rate):
    # waveform sample i holds the value i, label j holds j: the crop's first sample is its offset
    wavs = [torch.arange(n, dtype=torch.float32) for n in (40_000, 52_345, 33_333)]
    labels = [np.arange(n * label_rate // 16000) for n in (40_000, 52_345, 33_333)]
    wav, lab = collate_crop(wavs, labels, 32_000, np.random.default_rng(7), label_rate)
    assert wav.shape == (3, 32_000)
    assert lab.shape == (3, 32_000 * label_rate // 16000)
    offsets = wav[:, 0].long()
    assert torch.equal(wav, offsets[:, None] + torch.arange(32_000))
    assert torch.equal(lab[:, 0], torch.round(offsets * label_rate / 16000).long())
    assert torch.equal(lab, lab[:, :1] + torch.arange(lab.shape[1]))


def test_100hz_labels_crop_at_twice_the_50hz_offset():
    wavs = [torch.arange(n, dtype=torch.float32) for n in (48_000, 64_000)]
    lab100 = [np.arange(n // 160) for n in (48_000, 64_000)]
    lab50 = [np.arange(n // 320) for n in (48_000, 64_000)]
    w1, l100 = collate_crop(wavs, lab100, 16_000, np.random.default_rng(1), 100)
    w2, l50 = collate_crop(wavs, lab50, 16_000, np.random.default_rng(1), 50)
    assert torch.equal(w1, w2)
    assert l100.shape[1] == 2 * l50.shape[1]
    off = w1[:, 0].double()
    assert torch.equal(l100[:, 0], torch.round(off / 160).long())
    assert torch.equal(l50[:, 0], torch.round(off / 320).long())


def test_pad_mode_pads_to_the_longest_with_lengths():
    wavs = [torch.ones(n) for n in (16_000, 20_000, 30_000)]
    labels = [np.full(n // 320, 3) for n in (16_000, 20_000, 30_000)]
    wav, lengths, lab = collate_pad(wavs, labels, 24_000, np.random.default_rng(0), 50)
    assert wav.shape == (3, 24_000) and lengths.tolist() == [16_000, 20_000, 24_000]
    assert wav[0, 16_000:].abs().sum() == 0 and wav[2].min() == 1
    assert lab.shape == (3, 75)
    assert (lab[0, :50] == 3).all() and (lab[0, 50:] == -1).all()   # -1: ignored by the model


def test_bad_batching_mode_is_named():
    with pytest.raises(BadInput, match="batching"):
        group(np.arange(3), np.full(3, 10), 100, 100, mode="bucket")
