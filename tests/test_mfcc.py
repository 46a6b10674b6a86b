"""MFCC against a direct transcription of fairseq's dump_mfcc_feature.py (torchaudio Kaldi)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from mhubert import audio
from mhubert.corpus.manifest import Manifest
from mhubert.errors import BadInput
from mhubert.features.mfcc import mfcc, mfcc_batch, num_frames


def fairseq_mfcc(x: torch.Tensor) -> torch.Tensor:
    """MfccFeatureReader.get_feats of fairseq/examples/hubert/simple_kmeans/dump_mfcc_feature.py."""
    with torch.no_grad():
        x = x.float().view(1, -1)
        mfccs = kaldi.mfcc(waveform=x, sample_frequency=16000, use_energy=False)  # (time, freq)
        mfccs = mfccs.transpose(0, 1)
        deltas = AF.compute_deltas(mfccs)
        ddeltas = AF.compute_deltas(deltas)
        concat = torch.cat([mfccs, deltas, ddeltas], dim=0)
        return concat.transpose(0, 1).contiguous()


def _signal(n: int, seed: int) -> torch.Tensor:
    """Speech-like test audio in [-1, 1]: a chirp with bursts of noise and a stretch of silence."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    x = 0.3 * torch.sin(2 * torch.pi * (150 + 400 * t) * t) * (0.5 + 0.5 * torch.sin(7 * t))
    x = x + 0.05 * torch.randn(n, generator=g)
    x[n // 3: n // 3 + min(2000, n // 4)] = 0.0
    return x.clamp(-1, 1)


LENGTHS = [400, 401, 559, 560, 561, 16000, 16123, 23999, 40007]


@pytest.mark.parametrize("n", LENGTHS)
def test_mfcc_is_the_fairseq_recipe(n):
    x = _signal(n, n)
    ref = fairseq_mfcc(x)
    got = mfcc(x)
    assert got.shape == (1 + (n - 400) // 160, 39) == (num_frames(n), 39)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_batched_matches_reference_within_1e3():
    xs = [_signal(n, i) for i, n in enumerate(LENGTHS)] + [torch.zeros(8000), _signal(399, 1)]
    got = mfcc_batch(xs)
    assert len(got) == len(xs)
    for x, g in zip(xs, got, strict=True):
        if x.numel() < 400:
            assert g.shape == (0, 39)
            continue
        ref = fairseq_mfcc(x)
        assert g.shape == ref.shape
        assert float((g - ref).abs().max()) <= 1e-3, x.numel()
    # order and independence: the same utterance alone gives the same result
    alone = mfcc_batch([xs[5]])[0]
    torch.testing.assert_close(alone, got[5], rtol=0, atol=1e-4)


def test_batched_on_synthetic_speech(synth_corpus):
    """Real speech has quiet frames whose low mel bins come from heavy cancellation: the batched
    path must round like Kaldi's, not just be algebraically equal."""
    m = Manifest.read(synth_corpus["manifest"])
    xs = [audio.load(m.url_of(i)) for i in range(0, len(m), max(1, len(m) // 16))]
    for x, g in zip(xs, mfcc_batch(xs), strict=True):
        assert float((g - fairseq_mfcc(x)).abs().max()) <= 1e-3


def test_batched_with_small_chunks_is_unchanged():
    xs = [_signal(n, i) for i, n in enumerate([16000, 7000, 30000])]
    a = mfcc_batch(xs)
    b = mfcc_batch(xs, chunk_frames=37)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-4)


def test_other_rates_are_resampled_first():
    x8 = _signal(8000, 3)
    ref = fairseq_mfcc(AF.resample(x8, 8000, 16000))
    torch.testing.assert_close(mfcc(x8, sample_rate=8000), ref, rtol=0, atol=1e-5)
    assert float((mfcc_batch([x8], sample_rate=8000)[0] - ref).abs().max()) <= 1e-3


def test_bad_input():
    with pytest.raises(BadInput, match="1-D"):
        mfcc(torch.zeros(2, 16000))
    with pytest.raises(BadInput, match="torch.Tensor"):
        mfcc(np.zeros(16000))


def test_features_cli_dumps_fairseq_npy_and_len(synth_corpus, tmp_path):
    from mhubert.cli import main

    out = str(tmp_path / "feats")
    m = Manifest.read(synth_corpus["manifest"])
    assert main(["features", "mfcc", "--manifest", synth_corpus["manifest"], "--out", out,
                 "--shard", "1", "--num-shards", "3", "--quiet"]) == 0
    start, end = round(len(m) / 3), round(len(m) / 3 * 2)
    lens = [int(v) for v in (tmp_path / "feats" / "manifest_1_3.len").read_text().split()]
    feats = np.load(tmp_path / "feats" / "manifest_1_3.npy")
    assert (tmp_path / "feats" / "manifest_1_3._SUCCESS").exists()
    assert len(lens) == end - start and feats.shape == (sum(lens), 39) and feats.dtype == np.float32
    assert lens == [num_frames(m[i].n_samples) for i in range(start, end)]
    offsets = np.cumsum([0] + lens)
    for k, i in enumerate(range(start, end)):
        ref = fairseq_mfcc(audio.load(m.url_of(i))).numpy()
        assert np.abs(feats[offsets[k]:offsets[k + 1]] - ref).max() <= 1e-3
    assert main(["features", "mfcc", "--manifest", synth_corpus["manifest"], "--out", out,
                 "--shard", "3", "--num-shards", "3"]) == 2
