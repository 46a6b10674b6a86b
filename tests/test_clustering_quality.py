"""Clustering quality metrics against sklearn/scipy: PNMI, purity, cluster sizes, unit LID."""

from __future__ import annotations

import numpy as np
import pytest

from mhubert.clustering import quality
from mhubert.errors import BadInput


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


def test_report_scores_the_configured_method_into_the_eval_report(tmp_path):
    """The report labels the sample rows by the configured method (the reference: plain faiss's
    HNSW search and an IndexFlatL2 search over the same coarse centroids, after OPQ) and writes its
    files into the EvalReport directory."""
    import faiss
    from helpers.clustering import make_corpus

    from mhubert.artifacts import EvalReport, Index
    from mhubert.clustering import ClusteringConfig
    from mhubert.clustering import fit as cfit
    from mhubert.clustering import sample as csample
    from mhubert.features.spec import FeatureSpec

    murl = make_corpus(str(tmp_path))
    clu = str(tmp_path / "clu")
    csample.build_sample(murl, f"{clu}/sample", FeatureSpec("mfcc"),
                         ClusteringConfig(memory_budget_gb=1e-3), progress=False)
    cfit.fit(f"{clu}/sample", clu, ClusteringConfig(
        num_clusters=48, index_factory="OPQ4_40,IVF{K}_HNSW4,PQ4x4fsr", opq_niter=2, hnsw_ef_search=1,
        kmeans_device="cpu"))
    x, _ = csample.load_sample(f"{clu}/sample")
    index = faiss.read_index(Index(clu).index_url)
    ivf = faiss.downcast_index(index.index)
    xt = faiss.downcast_VectorTransform(index.chain.at(0)).apply(x)
    flat = faiss.IndexFlatL2(ivf.d)
    flat.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
    ref = {"hnsw": ivf.quantizer.search(xt, 1)[1][:, 0], "exact": flat.search(xt, 1)[1][:, 0]}
    assert (ref["hnsw"] != ref["exact"]).any()
    for method in ("hnsw", "exact"):
        ev = str(tmp_path / method)
        q = quality.report(ev, Index(clu).index_url, f"{clu}/sample", murl, label_method=method)
        assert q["label_method"] == method and q["num_rows"] == len(x)
        report = EvalReport(ev)
        assert report.read_json(EvalReport.QUALITY) == q
        assert report.read_json(EvalReport.SIZES)["counts"] == np.bincount(ref[method], minlength=48).tolist()
        assert report.read_bytes(EvalReport.SIZES_PLOT)[:4] == b"\x89PNG"
