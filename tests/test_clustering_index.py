"""The clustering index on synthetic vectors: reading plain faiss indices, training (factory and
exact), labelling by the configured method against faiss's own search and numpy brute force, save/load."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from helpers.clustering import SMALL_FACTORY, brute_force, mixture

from mhubert import storage
from mhubert.artifacts import Index
from mhubert.clustering import ClusteringConfig, kmeans, quality
from mhubert.clustering import index as cindex
from mhubert.errors import BadInput


@pytest.fixture(scope="module")
def plain_faiss_index(tmp_path_factory):
    """An OPQ+IVF-HNSW+PQ index built and written with plain faiss (as the mHuBERT-147 scripts)."""
    x = mixture(3000, 16, 12, seed=1)
    index = faiss.index_factory(16, "OPQ4_16,IVF12_HNSW32,PQ4x4fsr")
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    opq.niter, opq.niter_pq_0 = 3, 4
    index.train(x)
    path = str(tmp_path_factory.mktemp("faiss") / "plain.index")
    faiss.write_index(index, path)
    return path, x


def plain_labels(path: str, x: np.ndarray) -> np.ndarray:
    index = faiss.read_index(path)
    ivf = faiss.downcast_index(index.index)
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    _, ids = ivf.quantizer.search(opq.apply(x), 1)
    return ids[:, 0]


def test_reads_plain_faiss_index_local_and_s3(plain_faiss_index, storage_root):
    path, x = plain_faiss_index
    url = storage.join(storage_root, "idx", "plain.index")
    with open(path, "rb") as f:
        storage.atomic_write(url, f.read())
    ci = cindex.load(url)
    assert ci.mode == "factory" and ci.num_clusters == 12 and ci.dim == 16
    q = mixture(500, 16, 12, seed=7)
    np.testing.assert_array_equal(ci.label(q), plain_labels(path, q))
    # the exact variant is the true nearest coarse centroid in the OPQ space
    plain = faiss.read_index(path)       # keep the owner alive while its OPQ is used
    opq = faiss.downcast_VectorTransform(plain.chain.at(0))
    np.testing.assert_array_equal(ci.label(q, "exact"),
                                  brute_force(opq.apply(q), ci.coarse_centroids()))


def test_train_factory_labels_equal_plain_faiss_after_roundtrip(tmp_path):
    x = mixture(4000, 16, 10, seed=2)
    cfg = ClusteringConfig(num_clusters=10, index_factory=SMALL_FACTORY, opq_niter=3)
    ci = cindex.train(x, cfg)
    art = Index(str(tmp_path))
    cindex.save(ci, art)
    art.commit({"mode": "factory"})
    url = art.index_url
    np.testing.assert_array_equal(cindex.load_artifact(art).label(x), plain_labels(url, x))
    c = np.load(tmp_path / "centroids.npy")
    assert c.shape == (10, 16) and c.dtype == np.float32
    # centroids are the per-cluster means of the training vectors in the original space
    lab = plain_labels(url, x)
    np.testing.assert_allclose(c[lab[0]], x[lab == lab[0]].mean(0), rtol=1e-4, atol=1e-4)
    # well separated clusters: approximate labels agree with the exact nearest centroid
    assert quality.agreement(lab, brute_force(x, c)) > 0.95


def test_exact_mode_matches_numpy_brute_force(tmp_path):
    x = mixture(2000, 8, 6, seed=3)
    ci = cindex.train(x, ClusteringConfig(num_clusters=6, mode="exact", niter=10))
    c = ci.coarse_centroids()
    q = np.random.default_rng(4).standard_normal((777, 8)).astype(np.float32) * 4
    np.testing.assert_array_equal(ci.label(q), brute_force(q, c))
    cindex.save(ci, Index(str(tmp_path)))
    again = cindex.load(str(tmp_path / "index.faiss"))
    assert again.mode == "exact"
    np.testing.assert_array_equal(again.label(q), brute_force(q, c))


def test_label_torch_applies_opq(plain_faiss_index):
    path, _ = plain_faiss_index
    ci = cindex.load(path)
    q = mixture(300, 16, 12, seed=8)
    np.testing.assert_array_equal(ci.label_torch(torch.from_numpy(q)).numpy(), ci.label(q, "exact"))


def test_small_samples_and_bad_settings_are_clear_errors():
    x = mixture(50, 16, 4)
    with pytest.raises(BadInput, match="fewer than num_clusters"):
        cindex.train(x, ClusteringConfig(num_clusters=100, mode="exact"))
    with pytest.raises(BadInput, match="OPQ"):
        cindex.train(mixture(200, 16, 4), ClusteringConfig(num_clusters=10, index_factory=SMALL_FACTORY))
    with pytest.raises(BadInput, match="IVF100 but num_clusters=50"):
        cindex.factory_string(ClusteringConfig(num_clusters=50, index_factory="OPQ16_64,IVF100_HNSW32,Flat"))
    with pytest.raises(BadInput, match="multiple of the number of subquantizers"):
        cindex.train(mixture(500, 10, 4),
                     ClusteringConfig(num_clusters=4, index_factory="OPQ3_16,IVF{K},Flat"))
    with pytest.raises(BadInput, match="dimension"):
        kmeans.exact_assign(np.zeros((3, 4), np.float32), np.zeros((2, 5), np.float32))
    assert cindex.factory_string(ClusteringConfig(num_clusters=7, index_factory="IVF{K},Flat")) == "IVF7,Flat"
    with pytest.raises(BadInput, match="uint16"):
        ClusteringConfig(num_clusters=70000)
    with pytest.raises(BadInput, match="opq_niter must be >= 1"):
        ClusteringConfig(opq_niter=0)


def test_load_rejects_non_index(tmp_path):
    p = tmp_path / "junk.index"
    p.write_bytes(b"not a faiss index")
    with pytest.raises(BadInput, match="not a faiss index"):
        cindex.load(str(p))
    with pytest.raises(BadInput, match="not found"):
        cindex.load(str(tmp_path / "missing.index"))




def test_index_caches_are_declared_fields(plain_faiss_index):
    ci = cindex.load(plain_faiss_index[0])
    ci.coarse_centroids()
    assert ci.coarse is not None and ci.coarse_sq is not None
    with pytest.raises(AttributeError):
        ci._coarse = ci.coarse           # an undeclared attribute cannot be set
