"""The fit stage: an Index committed from a committed sample, its figures in the marker, reuse
only with the same sample and settings; k-means on the GPU where faiss has one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.clustering import brute_force, make_corpus, mixture

from mhubert import storage
from mhubert.artifacts import Index, StaleArtifact
from mhubert.clustering import ClusteringConfig, kmeans
from mhubert.clustering import fit as cfit
from mhubert.clustering import index as cindex
from mhubert.clustering import sample as csample
from mhubert.errors import BadInput
from mhubert.features.spec import FeatureSpec


def test_fit_commits_an_index_and_reuses_it(tmp_path, monkeypatch):
    murl = make_corpus(str(tmp_path))
    clu = str(tmp_path / "clu")
    csample.build_sample(murl, storage.join(clu, "sample"), FeatureSpec("mfcc"),
                         ClusteringConfig(memory_budget_gb=1e-3), progress=False)
    cfg = ClusteringConfig(num_clusters=4, mode="exact", niter=5, kmeans_device="cpu")
    meta = cfit.fit(storage.join(clu, "sample"), clu, cfg)
    assert meta["num_clusters"] == 4 and meta["label_rate"] == 100 and meta["kmeans_device"] == "cpu"
    assert meta["label_method"] == "exact"
    art = Index(clu)
    assert art.info == meta and set(art.marker().files) == {"index.faiss", "centroids.npy"}
    art.verify()
    ci = cindex.load_artifact(art)
    x, _ = csample.load_sample(storage.join(clu, "sample"))
    np.testing.assert_array_equal(ci.label(x), brute_force(x, np.load(tmp_path / "clu" / "centroids.npy")))
    monkeypatch.setattr(cindex, "train", lambda *a: pytest.fail("retrained a committed index"))
    assert cfit.fit(storage.join(clu, "sample"), clu, cfg) == meta
    with pytest.raises(StaleArtifact, match="num_clusters: 4 -> 5"):
        cfit.fit(storage.join(clu, "sample"), clu, ClusteringConfig(num_clusters=5, mode="exact"))
    with pytest.raises(BadInput, match="no committed clustering-sample"):
        cfit.fit(str(tmp_path / "nothing"), str(tmp_path / "n2"), cfg)


def test_kmeans_device_gpu_without_one_is_an_error_not_a_cpu_run():
    if kmeans.faiss_gpus() > 0:
        pytest.skip("this machine has a faiss GPU")
    assert kmeans.kmeans_device("auto") == "cpu"
    with pytest.raises(BadInput, match="no GPU support"):
        cindex.train(mixture(2000, 8, 4), ClusteringConfig(num_clusters=4, mode="exact",
                                                           kmeans_device="gpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or kmeans.faiss_gpus() == 0,
                    reason="needs CUDA and a faiss build with GPU support")
def test_gpu_kmeans_reaches_the_cpu_inertia():
    x = mixture(20000, 32, 50, seed=4)
    cfg = dict(num_clusters=50, mode="exact", niter=20, seed=1)
    gpu = cindex.train(x, ClusteringConfig(**cfg, kmeans_device="gpu"))
    cpu = cindex.train(x, ClusteringConfig(**cfg, kmeans_device="cpu"))
    assert gpu.kmeans_device == "gpu" and cpu.kmeans_device == "cpu"

    def inertia(c):
        lab = brute_force(x, c)
        return float(((x.astype(np.float64) - c[lab]) ** 2).sum())

    assert inertia(gpu.centroids) <= 1.01 * inertia(cpu.centroids)
