"""Clustering on synthetic vectors: faiss index reading/labelling, exact assignment, quality metrics."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from mhubert import storage
from mhubert.clustering import ClusteringConfig, quality
from mhubert.clustering import index as cindex
from mhubert.errors import BadInput

# A factory string of the paper's shape, small enough to train in about a second on 2 cores.
SMALL_FACTORY = "OPQ4_16,IVF{K}_HNSW32,PQ4x4fsr"


def mixture(n: int, d: int, k: int, seed: int = 0, spread: float = 4.0) -> np.ndarray:
    """n points of a k-component gaussian mixture in d dims, float32."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * spread
    return (means[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


def brute_force(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fairseq dump_km_label.py: argmin of ||x||² - 2 x·C + ||C||² in float64."""
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    d = (x64 ** 2).sum(1, keepdims=True) - 2 * x64 @ c64.T + (c64 ** 2).sum(1)[None]
    return d.argmin(1)


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
    np.testing.assert_array_equal(ci.label(q, exact=True),
                                  brute_force(opq.apply(q), ci.coarse_centroids()))


def test_train_factory_labels_equal_plain_faiss_after_roundtrip(tmp_path):
    x = mixture(4000, 16, 10, seed=2)
    cfg = ClusteringConfig(num_clusters=10, index_factory=SMALL_FACTORY, opq_niter=3)
    ci = cindex.train(x, cfg)
    url = str(tmp_path / "index.faiss")
    cindex.save(ci, url, str(tmp_path / "centroids.npy"))
    np.testing.assert_array_equal(cindex.load(url).label(x), plain_labels(url, x))
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
    cindex.save(ci, str(tmp_path / "flat.faiss"))
    again = cindex.load(str(tmp_path / "flat.faiss"))
    assert again.mode == "exact"
    np.testing.assert_array_equal(again.label(q), brute_force(q, c))


def test_exact_assign_chunked_and_torch_equal_brute_force():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 24)).astype(np.float32)
    c = rng.standard_normal((37, 24)).astype(np.float32)
    ref = brute_force(x, c)
    np.testing.assert_array_equal(cindex.exact_assign(x, c, chunk=128), ref)
    got = cindex.torch_assign(torch.from_numpy(x), torch.from_numpy(c), chunk=300).numpy()
    np.testing.assert_array_equal(got, ref)


def test_label_torch_applies_opq(plain_faiss_index):
    path, _ = plain_faiss_index
    ci = cindex.load(path)
    q = mixture(300, 16, 12, seed=8)
    np.testing.assert_array_equal(ci.label_torch(torch.from_numpy(q)).numpy(), ci.label(q, exact=True))


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
        cindex.exact_assign(np.zeros((3, 4), np.float32), np.zeros((2, 5), np.float32))
    assert cindex.factory_string(ClusteringConfig(num_clusters=7, index_factory="IVF{K},Flat")) == "IVF7,Flat"


def test_load_rejects_non_index(tmp_path):
    p = tmp_path / "junk.index"
    p.write_bytes(b"not a faiss index")
    with pytest.raises(BadInput, match="not a faiss index"):
        cindex.load(str(p))
    with pytest.raises(BadInput, match="not found"):
        cindex.load(str(tmp_path / "missing.index"))


def test_pnmi_and_purity_match_sklearn():
    from scipy.stats import entropy as sp_entropy
    from sklearn.metrics import mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    rng = np.random.default_rng(6)
    lang = rng.integers(0, 5, 5000)
    clus = (lang * 3 + rng.integers(0, 4, 5000)) % 11       # partly informative
    h = sp_entropy(np.bincount(lang))
    assert quality.pnmi(lang, clus) == pytest.approx(mutual_info_score(lang, clus) / h, rel=1e-9)
    cm = contingency_matrix(lang, clus)
    assert quality.purity(lang, clus) == pytest.approx(cm.max(0).sum() / cm.sum())
    assert quality.cluster_purity(lang, clus) == pytest.approx(cm.max(1).sum() / cm.sum())
    names = np.array(["en", "fr", "de", "sw", "ja"])[lang]       # string labels work too
    assert quality.pnmi(names, clus) == pytest.approx(quality.pnmi(lang, clus))
    assert quality.pnmi(lang, lang) == pytest.approx(1.0)
    assert quality.pnmi(lang, np.zeros_like(lang)) == pytest.approx(0.0)


def test_cluster_sizes_and_plot():
    sizes = quality.cluster_sizes(np.array([0, 0, 2, 2, 2, 4]), 6)
    assert sizes["counts"] == [2, 0, 3, 0, 1, 0] and sizes["num_empty"] == 3
    assert sizes["perplexity"] == pytest.approx(np.exp(-(2 / 6 * np.log(2 / 6) + 3 / 6 * np.log(3 / 6)
                                                          + 1 / 6 * np.log(1 / 6))))
    assert quality.plot_sizes(sizes)[:8] == b"\x89PNG\r\n\x1a\n"


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
    c = cindex.kmeans_plusplus(x, 24, seed=3, sample=1000)
    rows = {r.tobytes() for r in x}
    assert c.shape == (24, 16) and all(r.tobytes() in rows for r in c)
    assert len({r.tobytes() for r in c}) == 24
    # k = n takes every row once; fewer distinct rows than k still yields k seeds
    small = x[:30]
    got = cindex.kmeans_plusplus(small, 30)
    assert sorted(r.tobytes() for r in got) == sorted(r.tobytes() for r in small)
    assert cindex.kmeans_plusplus(np.repeat(x[:3], 10, axis=0), 5).shape == (5, 16)
    with pytest.raises(BadInput, match="k-means\\+\\+"):
        cindex.kmeans_plusplus(x[:4], 5)


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
    np.testing.assert_array_equal(cindex.seeded_kmeans(x, 10, 12, seed=3, init="random"), km.centroids)
    ci = cindex.train(x, ClusteringConfig(num_clusters=10, mode="exact", niter=12, seed=3, init="random"))
    np.testing.assert_array_equal(ci.coarse_centroids(), km.centroids)
    with pytest.raises(BadInput, match="init"):
        cindex.train(x, ClusteringConfig(num_clusters=10, mode="exact", init="kmeans"))


# -- unit LID ---------------------------------------------------------------------------------
def _utterances(n_per: int, langs: list[str], groups: list[str], unit_of, seed: int = 0):
    """Label sequences of 40-80 frames, ``unit_of(lang, group, rng) -> (frames,) ids``."""
    rng = np.random.default_rng(seed)
    seqs, ls, gs = [], [], []
    for g in groups:
        for lang in langs:
            for _ in range(n_per):
                seqs.append(unit_of(lang, g, rng, int(rng.integers(40, 81))))
                ls.append(lang)
                gs.append(g)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return np.concatenate(seqs), offsets, ls, gs


def test_unit_histograms_are_relative_bincounts():
    flat = np.array([0, 2, 2, 1, 1, 1, 3])
    off = np.array([0, 3, 3, 7])  # the middle utterance is empty
    h = quality.unit_histograms(flat, off, 4)
    np.testing.assert_allclose(h, [[1 / 3, 0, 2 / 3, 0], [0, 0, 0, 0], [0, 3 / 4, 0, 1 / 4]])


def test_unit_lid_separates_language_from_condition_information():
    langs, groups = ["a", "b", "c", "d"], ["studio", "field"]
    # each language draws from its own 5 of 20 units: language fully readable in any condition
    lang_units = _utterances(12, langs, groups,
                             lambda lang, g, r, n: r.integers(0, 5, n) + 5 * langs.index(lang))
    q = quality.unit_lid(*lang_units)
    assert q["cv_accuracy"] == 1.0 and q["cross_condition_accuracy"] == 1.0
    assert q["num_languages"] == 4 and q["chance"] == 0.25
    # units that mark the language with a condition-specific code: language-pure clusters (frame
    # PNMI 1), readable within a condition, useless across conditions
    code = {(lang, g): i for i, (lang, g) in enumerate((a, b) for a in langs for b in groups)}
    cond = _utterances(12, langs, groups, lambda lang, g, r, n: np.full(n, code[(lang, g)]))
    flat, off, ls, gs = cond
    frame_lang = np.repeat(ls, np.diff(off))
    assert quality.pnmi(frame_lang, flat) == pytest.approx(1.0)
    q = quality.unit_lid(*cond)
    assert q["cv_accuracy"] == 1.0 and q["cross_condition_accuracy"] <= 0.3
    # units unrelated to the language: chance everywhere
    noise = _utterances(12, langs, groups, lambda lang, g, r, n: r.integers(0, 20, n), seed=1)
    q = quality.unit_lid(*noise)
    assert q["cv_accuracy"] < 0.5 and q["cross_condition_accuracy"] < 0.5
    assert quality.unit_lid(*noise[:3])["cross_condition_accuracy"] is None  # no groups given
    with pytest.raises(BadInput, match="one language per utterance"):
        quality.unit_lid(noise[0], noise[1], noise[2][:-1])
