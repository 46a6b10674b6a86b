"""Clustering of speech features into HuBERT targets (the mHuBERT-147 recipe).

Stages, one module each (features come from ``mhubert.features.Featurizer``):

- ``sample``: the clustering sample, α/β up-sampled by hours and filled up to a memory budget.
- ``fit``: the fit stage: a :class:`~mhubert.artifacts.Index` trained on the committed sample.
- ``assign``: sharded, idempotent labelling of the whole manifest, merged into one labels directory.
- ``quality``: cluster sizes, approximate-vs-exact agreement, PNMI and purity.

Beneath them: ``kmeans`` (k-means++ seeding, Lloyd on CPU or GPU, the exact argmin) and ``index``
(the faiss index class, training, save/load; labels are the coarse quantizer's top-1 after OPQ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mhubert.errors import BadInput

LABEL_METHODS = ("auto", "hnsw", "exact")
KMEANS_DEVICES = ("auto", "cpu", "gpu")


@dataclass
class ClusteringConfig:
    """The ``clustering`` section of a preset.

    ``index_factory`` may contain ``{K}``, replaced by ``num_clusters``. ``mode`` is ``factory`` (the
    faiss factory index, the paper's method) or ``exact`` (flat k-means, exact nearest centroid).
    ``memory_budget_gb`` is the size of the clustering sample in GB (1e9 bytes) of float32 features.
    ``init`` seeds the k-means (the flat one, or the IVF coarse quantizer's): ``kmeans++`` (greedy
    k-means++ on a subsample: lower inertia on clustered data) or ``random`` (faiss's own: random
    training rows, what the paper's ``index.train`` did).
    ``label_method``: how labels are taken from the index, on any hardware: ``hnsw`` (the coarse
    quantizer's HNSW top-1 after OPQ, as published), ``exact`` (the exact nearest coarse centroid
    after OPQ, by GEMM: on the GPU when the features are there), ``auto`` (the index's own search:
    hnsw for the factory index, exact for a flat one). The method that ran is recorded.
    ``kmeans_device``: where the Lloyd iterations run: ``auto`` (the GPU when faiss has GPU support
    and CUDA is present), ``cpu`` or ``gpu`` (an error without one).
    ``seed_rows`` / ``seed_trials``: the k-means++ seeding sample (0: max(30,000, 16·K) rows) and
    candidates per seed (0: 2 + ln K, sklearn's); smaller is faster (``benchmarks/bench_kmeans.py
    --variant`` measures what it costs in inertia).
    ``coarse_points`` / ``fine_niter``: with ``coarse_points`` > 0 the k-means iterations run on
    ``coarse_points`` random rows per centroid, then ``fine_niter`` more on the whole sample (0: every
    iteration on the whole sample, up to faiss's 256 rows per centroid).
    """

    num_clusters: int = 1000
    index_factory: str = "OPQ16_64,IVF1000_HNSW32,PQ16x4fsr"
    memory_budget_gb: float = 850.0
    alpha: float = 0.7
    beta: float = 0.9
    seed: int = 0
    mode: str = "factory"
    niter: int = 20             # exact mode: k-means iterations (the factory index uses faiss's 10)
    add_vectors: bool = False   # also add the sample to the index (the paper did; labels don't need it)
    hnsw_ef_search: int = 16    # faiss default, as in the published index
    opq_niter: int = 50         # faiss default; fewer trains much faster on small CPUs
    init: str = "kmeans++"      # kmeans++ | random
    label_method: str = "auto"  # auto | hnsw | exact
    kmeans_device: str = "auto"  # auto | cpu | gpu
    seed_rows: int = 0          # k-means++ sample rows (0: the default rule)
    seed_trials: int = 0        # k-means++ candidates per seed (0: 2 + ln K)
    coarse_points: int = 0      # rows per centroid for the k-means iterations (0: the whole sample)
    fine_niter: int = 0         # then this many on the whole sample (with coarse_points)

    def __post_init__(self) -> None:
        if not 1 <= self.num_clusters <= 65535:
            raise BadInput(f"clustering.num_clusters must be in [1, 65535] (uint16 labels), got "
                           f"{self.num_clusters}")
        for name in ("niter", "opq_niter", "hnsw_ef_search"):
            if getattr(self, name) < (0 if name == "niter" else 1):
                raise BadInput(f"clustering.{name} must be >= {0 if name == 'niter' else 1}, "
                               f"got {getattr(self, name)}")
        if self.init not in ("kmeans++", "random"):
            raise BadInput(f"clustering.init must be kmeans++ or random, got {self.init!r}")
        if self.mode not in ("factory", "exact"):
            raise BadInput(f"clustering mode must be 'factory' or 'exact', got {self.mode!r}")
        if self.label_method not in LABEL_METHODS:
            raise BadInput(f"clustering.label_method must be one of {', '.join(LABEL_METHODS)}, "
                           f"got {self.label_method!r}")
        if self.coarse_points < 0 or self.fine_niter < 0:
            raise BadInput(f"clustering.coarse_points and fine_niter must be >= 0, got "
                           f"{self.coarse_points} and {self.fine_niter}")
        if self.seed_rows < 0 or self.seed_trials < 0:
            raise BadInput(f"clustering.seed_rows and seed_trials must be >= 0, got {self.seed_rows} "
                           f"and {self.seed_trials}")
        if self.kmeans_device not in KMEANS_DEVICES:
            raise BadInput(f"clustering.kmeans_device must be one of {', '.join(KMEANS_DEVICES)}, "
                           f"got {self.kmeans_device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # What each stage's result depends on (its settings for mhubert.artifacts.decide): a sample
    # does not change with K, nor an index with the sampling budget (that is in its input, the
    # sample's fingerprint), nor labels with anything but the index, the features and the method.
    def sample_settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("memory_budget_gb", "alpha", "beta", "seed")}

    def fit_settings(self) -> dict[str, Any]:
        keys = ["num_clusters", "index_factory", "seed", "mode", "niter", "add_vectors", "hnsw_ef_search",
                "opq_niter", "init", "kmeans_device", "seed_rows", "seed_trials"]
        if self.coarse_points:   # only when used, so indexes fitted before these existed stay current
            keys += ["coarse_points", "fine_niter"]
        return {k: getattr(self, k) for k in keys}

    def assign_settings(self) -> dict[str, Any]:
        return {"label_method": self.label_method, "hnsw_ef_search": self.hnsw_ef_search}
