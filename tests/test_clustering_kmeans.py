"""k-means on synthetic vectors: k-means++ seeding, seeded Lloyd vs faiss's own, the exact argmin
(numpy and torch) against float64 brute force."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from helpers.clustering import SMALL_FACTORY, brute_force, mixture

from mhubert.clustering import ClusteringConfig, kmeans
from mhubert.clustering import index as cindex
from mhubert.errors import BadInput


def test_exact_assign_chunked_and_torch_equal_brute_force():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 24)).astype(np.float32)
    c = rng.standard_normal((37, 24)).astype(np.float32)
    ref = brute_force(x, c)
    np.testing.assert_array_equal(kmeans.exact_assign(x, c, chunk=128), ref)
    got = kmeans.torch_assign(torch.from_numpy(x), torch.from_numpy(c), chunk=300).numpy()
    np.testing.assert_array_equal(got, ref)


def _true_and_random(seed: int = 11, n: int = 6000, d: int = 16, k: int = 24):
    """A well-separated toy mixture and the inertia of its generating means (the formula reference)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * 6.0
    comp = rng.integers(0, k, n)
    x = (means[comp] + rng.standard_normal((n, d))).astype(np.float32)
    truth = float(((x.astype(np.float64) - means[comp]) ** 2).sum())
    return x, truth


def formula_inertia(x: np.ndarray, c: np.ndarray) -> float:
    """Σ_i min_k ||x_i - c_k||², float64 numpy."""
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    return float(((x64[:, None, :] - c64[None]) ** 2).sum(-1).min(1).sum())


def test_kmeans_plusplus_seeds_are_distinct_rows():
    x, _ = _true_and_random()
    c = kmeans.kmeans_plusplus(x, 24, seed=3, sample=1000)
    rows = {r.tobytes() for r in x}
    assert c.shape == (24, 16) and all(r.tobytes() in rows for r in c)
    assert len({r.tobytes() for r in c}) == 24
    # k = n takes every row once; fewer distinct rows than k still yields k seeds
    small = x[:30]
    got = kmeans.kmeans_plusplus(small, 30)
    assert sorted(r.tobytes() for r in got) == sorted(r.tobytes() for r in small)
    assert kmeans.kmeans_plusplus(np.repeat(x[:3], 10, axis=0), 5).shape == (5, 16)
    with pytest.raises(BadInput, match="k-means\\+\\+"):
        kmeans.kmeans_plusplus(x[:4], 5)


def test_seeding_reaches_true_inertia_where_random_init_does_not():
    x, truth = _true_and_random()
    k = 24
    # faiss's random-row init (what train() did before seeding) strands centroids on this toy
    km = faiss.Kmeans(16, k, niter=20, seed=0)
    km.train(x)
    random_ratio = formula_inertia(x, km.centroids) / truth
    assert random_ratio > 1.2
    exact = cindex.train(x, ClusteringConfig(num_clusters=k, mode="exact", niter=20))
    assert formula_inertia(x, exact.coarse_centroids()) / truth < 1.02
    # the factory index: coarse k-means seeded in the OPQ space, labels = HNSW top-1 after OPQ
    ci = cindex.train(x, ClusteringConfig(num_clusters=k, index_factory=SMALL_FACTORY, opq_niter=3))
    assert formula_inertia(x, ci.centroids) / truth < 1.02
    plain = faiss.index_factory(16, SMALL_FACTORY.replace("{K}", str(k)))
    faiss.downcast_VectorTransform(plain.chain.at(0)).niter = 3
    plain.train(x)
    pci = cindex.ClusterIndex(plain, "factory")
    assert formula_inertia(x, pci.original_space_centroids(x, pci.label(x))) / truth > 1.2


def test_random_init_is_faiss_own_kmeans():
    x = mixture(4000, 8, 10, seed=2)
    km = faiss.Kmeans(8, 10, niter=12, seed=3)
    km.train(x)
    np.testing.assert_array_equal(kmeans.seeded_kmeans(x, 10, 12, seed=3, init="random"), km.centroids)
    ci = cindex.train(x, ClusteringConfig(num_clusters=10, mode="exact", niter=12, seed=3, init="random"))
    np.testing.assert_array_equal(ci.coarse_centroids(), km.centroids)
    with pytest.raises(BadInput, match="init"):
        cindex.train(x, ClusteringConfig(num_clusters=10, mode="exact", init="kmeans"))


def test_coarse_then_fine_is_faiss_on_a_subsample_then_on_every_row():
    x = mixture(6000, 8, 10, seed=4)
    coarse = faiss.Kmeans(8, 10, niter=8, seed=3, max_points_per_centroid=50)
    coarse.train(x)
    fine = faiss.Kmeans(8, 10, niter=2, seed=4)
    fine.train(x, init_centroids=coarse.centroids)
    got = kmeans.seeded_kmeans(x, 10, 8, seed=3, init="random", coarse_points=50, fine_niter=2)
    np.testing.assert_array_equal(got, fine.centroids)
    full = faiss.Kmeans(8, 10, niter=8, seed=3)
    full.train(x)
    assert not np.array_equal(coarse.centroids, full.centroids)   # the coarse phase saw fewer rows
    ci = cindex.train(x, ClusteringConfig(num_clusters=10, mode="exact", niter=8, seed=3, init="random",
                                          coarse_points=50, fine_niter=2))
    np.testing.assert_array_equal(ci.coarse_centroids(), fine.centroids)
    # off by default, and then absent from the fit settings: indexes fitted before stay current
    assert "coarse_points" not in ClusteringConfig().fit_settings()
    assert ClusteringConfig(coarse_points=64, fine_niter=2).fit_settings()["fine_niter"] == 2
    with pytest.raises(BadInput, match="coarse_points"):
        ClusteringConfig(coarse_points=-1)
