"""Clustering on audio: the budgeted sample, sharded assignment, merge, report, CLI (file and S3)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from mhubert import storage
from mhubert.audio import encode_wav, load
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import assign as cassign
from mhubert.clustering import index as cindex
from mhubert.clustering import sample as csample
from mhubert.clustering.features import FeatureExtractor, FeatureSpec
from mhubert.corpus.manifest import Manifest, ManifestEntry
from mhubert.errors import BadInput
from mhubert.features import mfcc

SR = 16000
# (lang, dataset, seconds, tone Hz): two languages that sound different, odd lengths on purpose
UTTS = [("en", "a", 0.61, 220), ("en", "a", 0.83, 330), ("en", "b", 0.52, 260),
        ("fr", "a", 0.74, 1200), ("fr", "b", 0.97, 1500), ("fr", "b", 0.45, 1800)]


def make_corpus(root: str) -> str:
    """Write UTTS as wav under ``root`` and a manifest; returns the manifest URL."""
    rng = np.random.default_rng(0)
    entries = []
    for i, (lang, ds, sec, hz) in enumerate(UTTS):
        n = int(sec * SR)
        t = np.arange(n) / SR
        wav = 0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * rng.standard_normal(n)
        path = f"{ds}/{lang}/u{i}.wav"
        storage.atomic_write(storage.join(root, "corpus", path), encode_wav(wav.astype(np.float32)))
        entries.append(ManifestEntry(path, n, lang, ds))
    url = storage.join(root, "manifest.tsv")
    Manifest(storage.join(root, "corpus"), entries).write(url)
    return url


def ref_mfcc(manifest: Manifest) -> list[np.ndarray]:
    return [mfcc(load(manifest.url_of(i))).numpy() for i in range(len(manifest))]


@pytest.fixture(scope="module", params=["file", "s3"])
def shared_corpus(request, tmp_path_factory):
    """The corpus written once per backend (local files, moto S3): (root, manifest URL, Manifest,
    reference MFCCs)."""
    if request.param == "file":
        root = str(tmp_path_factory.mktemp("clu_corpus"))
    else:
        import uuid

        import s3fs

        endpoint = request.getfixturevalue("s3_server")
        name = f"clu-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir(name)
        s3fs.S3FileSystem.clear_instance_cache()
        root = f"s3://{name}"
    url = make_corpus(root)
    m = Manifest.read(url)
    return root, url, m, ref_mfcc(m)


@pytest.fixture
def corpus(shared_corpus, request):
    """shared_corpus with a fresh output root per test."""
    root, url, m, feats = shared_corpus
    return storage.join(root, request.node.name.replace("[", "-").rstrip("]")), url, m, feats


def exact_index(root: str, feats: list[np.ndarray], k: int = 4) -> tuple[str, cindex.ClusterIndex]:
    ci = cindex.train(np.concatenate(feats), ClusteringConfig(num_clusters=k, mode="exact", niter=5))
    url = storage.join(root, "clu", "index.faiss")
    cindex.save(ci, url, storage.join(root, "clu", "centroids.npy"))
    return url, ci


def test_assign_shards_merge_read_labels(corpus):
    root, murl, m, feats = corpus
    iurl, ci = exact_index(root, feats)
    labels = storage.join(root, "labels")
    spec = FeatureSpec("mfcc", batch_size=2)
    for s in range(2):
        cassign.assign_shard(murl, labels, iurl, spec, s, 2, progress=False)
    info = cassign.merge(labels, 2)
    assert info == {**info, "label_rate": 100, "num_clusters": 4, "num_utterances": 6,
                    "num_frames": sum(len(f) for f in feats)}
    flat, off = cassign.read_labels(labels)
    assert flat.dtype == np.uint16 and off.dtype == np.int64 and len(off) == 7
    want = [ci.label(f) for f in feats]
    for i, (e, w) in enumerate(zip(m, want, strict=True)):
        assert off[i + 1] - off[i] == 1 + (e.n_samples - 400) // 160
        np.testing.assert_array_equal(flat[off[i]:off[i + 1]], w)
    km = storage.read_text(storage.join(labels, "labels.km")).splitlines()
    assert km == [" ".join(str(v) for v in w) for w in want]
    shard1 = storage.read_text(storage.join(labels, "shard-00001-of-00002.km")).splitlines()
    assert shard1 == km[3:]
    assert storage.read_text(storage.join(labels, "dict.km.txt")) == "0 1\n1 1\n2 1\n3 1\n"
    assert json.loads(storage.read_text(storage.join(labels, "_SUCCESS")))["label_rate"] == 100


def _visible(labels: str) -> list[str]:
    return [n for n in storage.listdir(labels) if n.startswith("shard-")]


def test_killed_shard_leaves_nothing_and_rerun_completes(corpus, monkeypatch):
    root, murl, _, feats = corpus
    iurl, _ = exact_index(root, feats)
    labels = storage.join(root, "labels")
    calls = {"n": 0}
    real = FeatureExtractor.extract_tensors

    def dies_midway(self, wavs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(self, wavs)

    monkeypatch.setattr(FeatureExtractor, "extract_tensors", dies_midway)
    with pytest.raises(RuntimeError, match="killed"):
        cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", batch_size=1), 0, 1, progress=False)
    assert _visible(labels) == []
    monkeypatch.setattr(FeatureExtractor, "extract_tensors", real)
    cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", batch_size=1), 0, 1, progress=False)
    assert _visible(labels) == ["shard-00000-of-00001.done", "shard-00000-of-00001.km",
                                "shard-00000-of-00001.npz"]


def test_rerun_of_finished_shard_is_noop(corpus, monkeypatch):
    root, murl, _, feats = corpus
    iurl, _ = exact_index(root, feats)
    labels = storage.join(root, "labels")
    first = cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc"), 1, 3, progress=False)
    fs, _ = storage.get_fs(labels)

    def stamps():
        out = {}
        for n in _visible(labels):
            i = fs.info(storage.get_fs(storage.join(labels, n))[1])
            out[n] = (i.get("mtime"), i.get("ETag"), i.get("LastModified"), i["size"])
        return out

    before = stamps()
    monkeypatch.setattr(cindex, "load", lambda *a, **k: pytest.fail("re-ran a finished shard"))
    assert cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc"), 1, 3, progress=False) == first
    assert stamps() == before and len(before) == 3
    with pytest.raises(BadInput, match="2 of 3 shards are not done"):
        cassign.merge(labels, 3)


def test_bad_shard_arguments():
    with pytest.raises(BadInput, match="--shard must be in"):
        cassign.shard_range(10, 2, 2)
    with pytest.raises(BadInput, match="--num-shards"):
        cassign.shard_range(10, 0, 0)
    assert [cassign.shard_range(10, 3, i) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(BadInput, match="--model"):
        FeatureSpec("hubert")


def test_sample_respects_budget_and_streams_parts(corpus):
    root, murl, m, feats = corpus
    total = sum(len(f) for f in feats)
    budget_gb = total * 156 * 0.6 / 1e9
    out = storage.join(root, "clu", "sample")
    cfg = ClusteringConfig(memory_budget_gb=budget_gb)
    info = csample.build_sample(murl, out, FeatureSpec("mfcc"), cfg, shard_bytes=156 * 40,
                                progress=False)
    assert 0 < info["num_frames"] * 39 * 4 <= budget_gb * 1e9
    assert len(info["parts"]) > 1 and max(info["rows"]) <= 40 and sum(info["rows"]) == info["num_frames"]
    x, rows = csample.load_sample(out)
    utt = csample.row_utterances(out)
    seg = np.load(io.BytesIO(storage.read_bytes(storage.join(out, "segments.npy"))))
    want = np.concatenate([feats[i] for i in seg[:, 0]])
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-4)
    assert len(utt) == len(x) and (rows == np.arange(len(x))).all()
    sub, srows = csample.load_sample(out, max_rows=17, seed=3)
    np.testing.assert_array_equal(sub, x[srows])
    # a budget larger than the corpus repeats groups (α/β up-sampling), still within the budget
    big = storage.join(root, "clu2", "sample")
    info2 = csample.build_sample(murl, big, FeatureSpec("mfcc"),
                                 ClusteringConfig(memory_budget_gb=budget_gb * 5), progress=False)
    assert info2["num_copies"] > info2["num_utterances"]
    assert total < info2["num_frames"] and info2["num_frames"] * 156 <= budget_gb * 5 * 1e9


def test_select_upsamples_small_language():
    keys = [("en", "a")] * 90 + [("sw", "a")] * 10
    frames = [100] * 100
    idx = csample.select(keys, frames, 100, budget_frames=5000, alpha=0.7, beta=0.9, seed=0)
    share_sw = (idx >= 90).mean()
    p_sw = 0.1 ** 0.7 / (0.1 ** 0.7 + 0.9 ** 0.7)     # two-level formula on hours, α = 0.7
    assert len(idx) * 100 <= 5000
    assert abs(share_sw - p_sw) < 0.05 and share_sw > 0.15


def test_fit_and_report(tmp_path):
    root = str(tmp_path)
    murl = make_corpus(root)
    clu = storage.join(root, "clu")
    csample.build_sample(murl, storage.join(clu, "sample"), FeatureSpec("mfcc"),
                         ClusteringConfig(memory_budget_gb=1e-3), progress=False)
    meta = cindex.fit(storage.join(clu, "sample"), clu,
                      ClusteringConfig(num_clusters=4, mode="exact", niter=5))
    assert meta["num_clusters"] == 4 and meta["label_rate"] == 100
    from mhubert.clustering.quality import report

    q = report(clu, storage.join(clu, "index.faiss"), storage.join(clu, "sample"), murl)
    assert q["agreement_with_exact"] == 1.0
    assert 0.0 < q["language"]["pnmi"] <= 1.0 + 1e-9 and q["language"]["num_languages"] == 2
    sizes = json.loads((tmp_path / "clu" / "cluster_sizes.json").read_text())
    assert sum(sizes["counts"]) == q["num_rows"]
    assert (tmp_path / "clu" / "cluster_sizes.png").read_bytes()[:4] == b"\x89PNG"


def test_hubert_features_label_at_50hz(tmp_path):
    from mhubert.features.ssl import layer_features
    from mhubert.model import hubert_tiny
    from mhubert.model.convert import save_checkpoint_model

    torch.manual_seed(0)
    model = hubert_tiny().eval()
    mpath = str(tmp_path / "model.pt")
    save_checkpoint_model(model, mpath)
    root = str(tmp_path)
    murl = make_corpus(root)
    m = Manifest.read(murl)
    feats = []
    for i in range(len(m)):
        f, n = layer_features(model, load(m.url_of(i), normalize=True)[None], None, 2)
        feats.append(f[0, :int(n[0])].numpy())
    iurl, ci = exact_index(root, feats, k=3)
    labels = storage.join(root, "labels")
    spec = FeatureSpec("hubert", model=mpath, layer=2, batch_size=4)
    cassign.assign_shard(murl, labels, iurl, spec, 0, 1, progress=False)
    assert cassign.merge(labels, 1)["label_rate"] == 50
    flat, off = cassign.read_labels(labels)
    for i, f in enumerate(feats):
        assert off[i + 1] - off[i] == model.num_frames(m[i].n_samples)
        np.testing.assert_array_equal(flat[off[i]:off[i + 1]], ci.label(f))


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    from mhubert.cli import main

    root = str(tmp_path)
    murl = make_corpus(root)
    clu, labels = str(tmp_path / "clu"), str(tmp_path / "labels")
    assert main(["cluster", "sample", "--manifest", murl, "--out", clu, "--budget-gb", "0.001",
                 "--quiet", "--preset", "tiny"]) == 0
    assert main(["cluster", "fit", "--out", clu, "--preset", "tiny", "--num-clusters", "5",
                 "--mode", "exact"]) == 0
    for s in ("0", "1"):
        assert main(["cluster", "assign", "--manifest", murl, "--out", clu, "--labels", labels,
                     "--shard", s, "--num-shards", "2", "--quiet"]) == 0
    assert main(["cluster", "merge", "--labels", labels, "--num-shards", "2"]) == 0
    assert main(["cluster", "report", "--out", clu, "--manifest", murl, "--labels", labels]) == 0
    flat, off = cassign.read_labels(labels)
    assert len(off) == 7 and int(flat.max()) < 5
    ulid = storage.read_json(storage.join(clu, "quality.json"))["unit_lid"]
    assert ulid["num_utterances"] == 6
    capsys.readouterr()
    assert main(["cluster", "assign", "--manifest", murl, "--out", clu, "--labels", labels,
                 "--shard", "3", "--num-shards", "2"]) == 2
    assert "--shard must be in [0, 1]" in capsys.readouterr().err
    assert main(["cluster", "fit", "--out", str(tmp_path / "nothing"), "--preset", "tiny"]) == 2
    assert "no committed clustering sample" in capsys.readouterr().err
    assert main(["cluster", "assign", "--manifest", murl, "--index", str(tmp_path / "no.index"),
                 "--labels", str(tmp_path / "l2")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["cluster", "sample", "--manifest", murl, "--out", str(tmp_path / "c3"),
                 "--features", "hubert"]) == 2
    assert "--model" in capsys.readouterr().err
