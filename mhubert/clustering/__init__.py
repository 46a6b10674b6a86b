"""Clustering of speech features into HuBERT targets (the mHuBERT-147 recipe).

Stages, one module each:

- ``features``: per-utterance feature matrices (39-d MFCC at 100 Hz, or layer L of a model at 50 Hz).
- ``sample``: the clustering sample, α/β up-sampled by hours and filled up to a memory budget.
- ``index``: a faiss index (factory string, default ``OPQ16_64,IVF1000_HNSW32,PQ16x4fsr``) or exact
  k-means; labels are the coarse quantizer's top-1 after the OPQ rotation.
- ``assign``: sharded, idempotent labelling of the whole manifest, merged into one labels directory.
- ``quality``: cluster sizes, approximate-vs-exact agreement, PNMI and purity.
"""

from __future__ import annotations

from dataclasses import dataclass

from mhubert.errors import BadInput


@dataclass
class ClusteringConfig:
    """The ``clustering`` section of a preset.

    ``index_factory`` may contain ``{K}``, replaced by ``num_clusters``. ``mode`` is ``factory`` (the
    faiss factory index, the paper's method) or ``exact`` (flat k-means, exact nearest centroid).
    ``memory_budget_gb`` is the size of the clustering sample in GB (1e9 bytes) of float32 features.
    ``init`` seeds the k-means (the flat one, or the IVF coarse quantizer's): ``kmeans++`` (greedy
    k-means++ on a subsample: lower inertia on clustered data) or ``random`` (faiss's own: random
    training rows, what the paper's ``index.train`` did).
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

    def __post_init__(self) -> None:
        if self.init not in ("kmeans++", "random"):
            raise BadInput(f"clustering.init must be kmeans++ or random, got {self.init!r}")
