"""LabeledAudio (manifest + labels dir) and the per-epoch DataLoader."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from test_train_corpus import make_toy_corpus

from mhubert import storage
from mhubert.corpus.manifest import Manifest
from mhubert.data.dataset import DataConfig, EpochPlanner, LabeledAudio
from mhubert.errors import BadInput


def _cfg(**kw) -> DataConfig:
    base = dict(max_sample_size=32_000, min_sample_size=20_000, max_tokens=64_000, num_workers=0)
    return DataConfig(**{**base, **kw})


def test_reads_both_storages_normalises_and_filters(storage_root):
    c = make_toy_corpus(storage_root, n=4, lengths=[16_000, 24_000, 30_000, 40_000])
    data = LabeledAudio(Manifest.read(c["manifest"]), c["labels"], _cfg())
    assert data.lengths.tolist() == [24_000, 30_000, 40_000]      # 16_000 < min_sample_size
    assert data.label_rate == 50
    wav, lab = data.load(0)
    raw, _ = sf.read(io.BytesIO(storage.read_bytes(Manifest.read(c["manifest"]).url_of(1))),
                     dtype="float32")
    ref = F.layer_norm(torch.from_numpy(raw), raw.shape)
    torch.testing.assert_close(wav, ref, atol=1e-5, rtol=1e-5)
    assert len(lab) == 24_000 * 50 // 16000


def test_label_duration_mismatch_names_the_file(tmp_path):
    c = make_toy_corpus(str(tmp_path), n=3, lengths=[24_000, 32_000, 40_000])
    # the labels are at 50 Hz: reading them as 100 Hz halves their duration
    with pytest.raises(BadInput, match=r"a/en/u000\.wav.*100 Hz"):
        LabeledAudio(Manifest.read(c["manifest"]), c["labels"], _cfg(), label_rate=100)
    # a 0.08 s gap is tolerated (fairseq: 0.1 s), 0.12 s is not
    m = Manifest.read(c["manifest"])
    m.n_samples[1] = 32_000 + 1280
    LabeledAudio(m, c["labels"], _cfg())
    m.n_samples[1] = 32_000 + 1920
    with pytest.raises(BadInput, match=r"u001\.wav"):
        LabeledAudio(m, c["labels"], _cfg())


def test_uncommitted_labels_are_refused(tmp_path):
    c = make_toy_corpus(str(tmp_path), n=2)
    storage.remove(storage.join(c["labels"], "_SUCCESS"))
    with pytest.raises(BadInput, match="no committed labels"):
        LabeledAudio(Manifest.read(c["manifest"]), c["labels"], _cfg())


def test_loader_is_deterministic_across_workers_and_resume(tmp_path):
    c = make_toy_corpus(str(tmp_path), n=12, label_rate=100)
    data = LabeledAudio(Manifest.read(c["manifest"]), c["labels"], _cfg())
    planner = EpochPlanner(data, seed=3)
    n, loader = planner.loader(epoch=1)
    batches = list(loader)
    assert len(batches) == n and n >= 3
    for b in batches:
        bsz, s = b["wav"].shape
        assert bsz * s <= 64_000 and s <= 32_000 and b["lengths"] is None
        # one label fewer when a crop ends at the utterance's last (partial) label
        assert b["labels"].shape[0] == bsz
        assert s * 100 // 16000 - 1 <= b["labels"].shape[1] <= s * 100 // 16000
    data.cfg.num_workers = 1
    n2, resumed = planner.loader(epoch=1, start=2)       # resume at batch 2, decoded in a worker
    again = list(resumed)
    assert n2 == n and len(again) == n - 2
    for a, b in zip(batches[2:], again, strict=True):
        assert torch.equal(a["wav"], b["wav"]) and torch.equal(a["labels"], b["labels"])


def test_mp3_and_opus_from_s3_behind_latency_concurrent_reads(s3_bucket, request):
    """Common Voice's mp3 and MLS's opus, read through the 20 ms latency proxy; a batch's files are
    fetched concurrently; a metadata length 2 % off the decoded one is fitted and counted."""
    import numpy as np
    import torchaudio.functional as AF

    c = make_toy_corpus(s3_bucket + "/t", n=4, lengths=[32_000, 36_000, 40_000, 44_000])
    m = Manifest.read(c["manifest"])
    paths, refs = [], []
    for i in range(len(m)):
        x, _ = sf.read(io.BytesIO(storage.read_bytes(m.url_of(i))), dtype="float32")
        ext, fmt, sub, sr = [("mp3", "MP3", "MPEG_LAYER_III", 16000), ("opus", "OGG", "OPUS", 48000)][i % 2]
        if sr != 16000:
            x = AF.resample(torch.from_numpy(x), 16000, sr).numpy()
        buf = io.BytesIO()
        sf.write(buf, x, sr, format=fmt, subtype=sub)
        p = m.path(i).replace(".wav", f".{ext}")
        storage.atomic_write(storage.join(m.root, p), buf.getvalue())
        y, ysr = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")  # the reference decoder
        y = torch.from_numpy(y)
        y = AF.resample(y, ysr, 16000) if ysr != 16000 else y
        paths.append(p)
        refs.append(F.layer_norm(y, y.shape))
    n = m.n_samples.copy()
    assert all(len(r) == k for r, k in zip(refs, n, strict=True))
    n[3] = int(n[3] * 1.02)  # the metadata says 2 % more than the file holds
    mm = Manifest.from_columns(m.root, paths, n, m.langs.tolist(), m.dataset_of.tolist())
    proxy = request.getfixturevalue("s3_proxy")
    proxy.latency_s = 0.02
    data = LabeledAudio(mm, c["labels"], _cfg(min_sample_size=16_000, io_threads=4))
    got = data.load_many([0, 1, 2, 3])
    for k in range(3):
        torch.testing.assert_close(got[k][0], refs[k], atol=1e-5, rtol=1e-5)
    assert got[3][0].numel() == n[3] and torch.equal(got[3][0][n[3] - 500:], torch.zeros(500))
    torch.testing.assert_close(got[3][0][:len(refs[3])], refs[3], atol=1e-5, rtol=1e-5)
    assert data.mismatched == 1 and proxy.ops["get"] >= 4
    np.testing.assert_array_equal(data.lengths, n)
