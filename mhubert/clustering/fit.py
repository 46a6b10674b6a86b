"""The fit stage: train the clustering index on a committed sample and commit it as an
:class:`~mhubert.artifacts.Index` (``index.faiss``, ``centroids.npy``; the figures in its marker).

faiss trains the coarse k-means on at most 256·K points and the OPQ on 65,536, so unless
``add_vectors`` only 256·K random rows of the sample are read into memory.
"""

from __future__ import annotations

import logging

from mhubert.artifacts import ClusteringSample, Index, decide
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import index as cindex
from mhubert.clustering.sample import load_sample

log = logging.getLogger(__name__)


def fit_settings(cfg: ClusteringConfig) -> dict:
    return {"clustering": cfg.fit_settings()}


def fit(sample_dir: str, out_dir: str, cfg: ClusteringConfig, on_change: str = "stop") -> dict:
    """Train on the committed sample at ``sample_dir``; commit the Index at ``out_dir``.

    Returns the marker info. An index committed from the same sample with the same settings is
    reused; one committed otherwise stops (``on_change``: see :func:`mhubert.artifacts.decide`).
    """
    sample = ClusteringSample(sample_dir)
    info = sample.info                       # a clear error when the sample is not committed
    art = Index(out_dir)
    settings, inputs = fit_settings(cfg), {"sample": sample.fingerprint}
    if decide(art, settings, inputs, on_change) == "reuse":
        log.info("index in %s is already trained", out_dir)
        return art.info
    max_rows = None if cfg.add_vectors else 256 * cfg.num_clusters
    x, _ = load_sample(sample_dir, max_rows=max_rows, seed=cfg.seed)
    ci = cindex.train(x, cfg)
    cindex.save(ci, art)
    meta = {"mode": ci.mode, "num_clusters": ci.num_clusters, "dim": ci.dim,
            "index_factory": cindex.factory_string(cfg) if cfg.mode == "factory" else None,
            "trained_on": int(len(x)), "sample_frames": int(info["num_frames"]),
            "label_rate": int(info["label_rate"]), "features": info.get("features"),
            "sample": sample_dir, "kmeans_device": ci.kmeans_device,
            "label_method": ci.resolve_method(cfg.label_method)}
    art.commit(meta, settings=settings, inputs=inputs)
    return meta
