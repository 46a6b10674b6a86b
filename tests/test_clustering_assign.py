"""Sharded assignment on audio: shards, merge and the labels format (file and S3), the configured
label method recorded and honoured, reuse only with the same settings, killed and SIGTERMed shards
leave nothing partial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import faiss
import numpy as np
import pytest
import torch
from helpers.clustering import HeldAudio, exact_index, make_corpus, ref_mfcc, sigterm_while_held

from mhubert import storage
from mhubert.artifacts import CorruptArtifact, Index, Labels, Manifest, StaleArtifact
from mhubert.audio import load
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import assign as cassign
from mhubert.clustering import index as cindex
from mhubert.errors import BadInput
from mhubert.features.featurizer import Featurizer
from mhubert.features.spec import FeatureSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_assign_shards_merge_read_labels(corpus):
    root, murl, m, feats = corpus
    iurl, ci = exact_index(root, feats)
    labels = storage.join(root, "labels")
    spec = FeatureSpec("mfcc", batch_size=2)
    for s in range(2):
        cassign.assign_shard(murl, labels, iurl, spec, s, 2, progress=False)
    info = cassign.merge(labels, 2)
    assert info == {**info, "label_rate": 100, "num_clusters": 4, "num_utterances": 6,
                    "num_frames": sum(len(f) for f in feats), "label_method": "exact"}
    art = Labels(labels)
    assert art.info == info and art.label_rate == 100
    flat, off = art.read(verify=True)
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
    assert cassign.merge(labels, 2) == info          # merged with the same shards: reused


def _visible(labels: str) -> list[str]:
    if not storage.exists(labels):
        return []
    return sorted(n for n in storage.listdir(labels) if n.startswith("shard-"))


def test_killed_shard_leaves_nothing_and_rerun_completes(corpus, monkeypatch):
    root, murl, _, feats = corpus
    iurl, _ = exact_index(root, feats)
    labels = storage.join(root, "labels")
    calls = {"n": 0}
    real = Featurizer.extract_tensors

    def dies_midway(self, wavs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(self, wavs)

    monkeypatch.setattr(Featurizer, "extract_tensors", dies_midway)
    with pytest.raises(RuntimeError, match="killed"):
        cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", batch_size=1), 0, 1, progress=False)
    assert _visible(labels) == []
    monkeypatch.setattr(Featurizer, "extract_tensors", real)
    cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", batch_size=1), 0, 1, progress=False)
    assert _visible(labels) == ["shard-00000-of-00001.done", "shard-00000-of-00001.km",
                                "shard-00000-of-00001.npz"]


def test_finished_shard_is_reused_only_with_the_same_settings(corpus, monkeypatch):
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
    with monkeypatch.context() as mp:
        mp.setattr(cindex, "load", lambda *a, **k: pytest.fail("re-ran a finished shard"))
        assert cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc"), 1, 3, progress=False) == first
        # the same shard asked with other features settings: stops before any work
        with pytest.raises(StaleArtifact, match="normalize"):
            cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", normalize=True), 1, 3,
                                 progress=False)
    assert stamps() == before and len(before) == 3
    with pytest.raises(BadInput, match="2 of 3 shards are not done"):
        cassign.merge(labels, 3)
    forced = cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", normalize=True), 1, 3,
                                  progress=False, on_change="force")
    assert forced["fingerprint"] != first["fingerprint"]


def test_a_changed_index_file_is_refused_naming_it(tmp_path):
    murl = make_corpus(str(tmp_path))
    iurl, _ = exact_index(str(tmp_path), ref_mfcc(Manifest.read(murl)))
    with open(iurl, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CorruptArtifact, match="index.faiss"):
        cassign.assign_shard(murl, str(tmp_path / "labels"), iurl, FeatureSpec("mfcc"), progress=False)


def test_bad_shard_arguments():
    with pytest.raises(BadInput, match="--shard must be in"):
        cassign.shard_range(10, 2, 2)
    with pytest.raises(BadInput, match="--num-shards"):
        cassign.shard_range(10, 0, 0)
    assert [cassign.shard_range(10, 3, i) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(BadInput, match="--model"):
        FeatureSpec("hubert")
    with pytest.raises(BadInput, match="label_method"):
        ClusteringConfig(label_method="gpu")


# -- the configured label method ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sparse_hnsw_index(tmp_path_factory):
    """A factory index on the corpus's MFCCs whose HNSW search is approximate (M=4, efSearch=1), so
    that HNSW and exact labels disagree; committed as an Index. (dir, index URL, MFCCs, manifest)."""
    root = str(tmp_path_factory.mktemp("hnsw"))
    murl = make_corpus(root)
    feats = ref_mfcc(Manifest.read(murl))
    cfg = ClusteringConfig(num_clusters=48, index_factory="OPQ4_40,IVF{K}_HNSW4,PQ4x4fsr", opq_niter=2,
                           hnsw_ef_search=1, kmeans_device="cpu")
    ci = cindex.train(np.concatenate(feats), cfg)
    art = Index(storage.join(root, "clu"))
    cindex.save(ci, art)
    art.commit({"mode": "factory"}, settings={"test": "hnsw"})
    return root, murl, art.index_url, feats


def _reference_labels(index_url: str, feats: list[np.ndarray]) -> dict[str, np.ndarray]:
    """faiss's own answers, from the index file read by plain faiss: the quantizer's HNSW search and
    an exact IndexFlatL2 search over the same coarse centroids, both after the OPQ rotation."""
    index = faiss.read_index(index_url)
    ivf = faiss.downcast_index(index.index)
    xt = faiss.downcast_VectorTransform(index.chain.at(0)).apply(np.concatenate(feats))
    _, hnsw = ivf.quantizer.search(xt, 1)
    flat = faiss.IndexFlatL2(ivf.d)
    flat.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
    _, exact = flat.search(xt, 1)
    return {"hnsw": hnsw[:, 0], "exact": exact[:, 0]}


@pytest.mark.parametrize("method", ["hnsw", "exact", "auto"])
def test_labels_are_the_configured_method_and_it_is_recorded(sparse_hnsw_index, tmp_path, method):
    root, murl, iurl, feats = sparse_hnsw_index
    ref = _reference_labels(iurl, feats)
    assert (ref["hnsw"] != ref["exact"]).mean() > 0.01         # the two methods differ here
    labels = str(tmp_path / "labels")
    cfg = ClusteringConfig(label_method=method)
    for s in range(2):
        cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", device="cpu"), s, 2, cfg=cfg,
                             progress=False)
    info = cassign.merge(labels, 2)
    ran = "hnsw" if method == "auto" else method       # auto: the index's own search (HNSW here)
    assert info["label_method"] == ran and Labels(labels).info["label_method"] == ran
    assert info["label_device"] == "cpu"
    flat, _ = Labels(labels).read()
    np.testing.assert_array_equal(flat, ref[ran])


def test_hnsw_on_a_flat_index_is_an_error(corpus):
    root, murl, _, feats = corpus
    iurl, _ = exact_index(root, feats)
    with pytest.raises(BadInput, match="no HNSW quantizer"):
        cassign.assign_shard(murl, storage.join(root, "labels"), iurl, FeatureSpec("mfcc"),
                             cfg=ClusteringConfig(label_method="hnsw"), progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_labels_on_the_gpu_equal_cpu_exact_and_hnsw_stays_hnsw(sparse_hnsw_index, tmp_path):
    _, murl, iurl, feats = sparse_hnsw_index
    ref = _reference_labels(iurl, feats)
    for method, device in (("exact", "cuda"), ("hnsw", "cpu")):
        labels = str(tmp_path / method)
        info = cassign.assign_shard(murl, labels, iurl, FeatureSpec("mfcc", device="cuda"),
                                    cfg=ClusteringConfig(label_method=method), progress=False)
        assert info["label_method"] == method and info["label_device"] == device
        flat, _ = Labels(labels).read_shard(0, 1)
        assert (flat == ref[method]).mean() > 0.999      # fp32 GEMM on the GPU may flip exact ties


# -- SIGTERM -----------------------------------------------------------------------------------
def test_sigterm_stops_assign_at_a_shard_boundary_and_rerun_completes(tmp_path):
    """SIGTERM reaches ``mhubert cluster assign`` while it is inside its shard (blocked on the HTTP
    answer for the third utterance, which the test releases only after the signal): it exits 143
    with no shard file written and nothing committed; a rerun completes the shard."""
    murl = make_corpus(str(tmp_path))
    m = Manifest.read(murl)
    iurl, ci = exact_index(str(tmp_path), ref_mfcc(m))
    served = HeldAudio(m.root, m[2].path)
    http_manifest = str(tmp_path / "http.tsv")
    Manifest(served.url, m.entries).write(http_manifest)
    labels = str(tmp_path / "labels")
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "mhubert", "cluster", "assign", "--manifest", http_manifest,
           "--index", iurl, "--labels", labels, "--batch-size", "1", "--quiet"]
    try:
        rc, err = sigterm_while_held(cmd, env, served)
        assert rc == 143, err
        assert "stopped by SIGTERM" in err and "nothing partial" in err
        assert _visible(labels) == [] and not Labels(labels).is_committed()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        served.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_utterances"] == 6
    flat, _ = Labels(labels).read_shard(0, 1)
    np.testing.assert_array_equal(flat, np.concatenate([ci.label(f) for f in ref_mfcc(m)]))


def test_hubert_features_label_at_the_conv_frame_rate(tmp_path):
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
    info = cassign.assign_shard(murl, labels, iurl, spec, 0, 1, progress=False)
    assert "model" in info["inputs"]
    assert cassign.merge(labels, 1)["label_rate"] == 16000 // model.cfg.total_stride == 50
    flat, off = Labels(labels).read()
    for i, f in enumerate(feats):
        assert off[i + 1] - off[i] == model.num_frames(m[i].n_samples)
        np.testing.assert_array_equal(flat[off[i]:off[i + 1]], ci.label(f))
