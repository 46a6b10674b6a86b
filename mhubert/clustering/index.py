"""The clustering index: a faiss index and how labels are taken from it; train, save, load.

Two modes:

- ``factory`` (the mHuBERT-147 method): ``faiss.index_factory(D, "OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr")``
  trained on the sample. Labels are the IVF coarse quantizer's: after the OPQ rotation, either its
  own search (``label_method=hnsw``: HNSW top-1, as published) or the exact nearest of its K
  centroids by GEMM (``label_method=exact``). PQ codes are never used for labels.
- ``exact``: flat k-means (:func:`mhubert.clustering.kmeans.seeded_kmeans`); a label is the exact
  nearest centroid.

Labels come from the method the config names, on any hardware: the HNSW search runs on the CPU
(faiss has no GPU HNSW), the exact argmin on the CPU (numpy GEMM) or on the features' CUDA device
(torch GEMM); the method that ran is what the caller records (``label_method``).

Any index that faiss can read is accepted for labelling: an ``IndexPreTransform`` over an IVF index
(e.g. the published ``mhubert147_faiss.index``), a bare IVF index, or a flat index of centroids.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field

import faiss
import numpy as np

from mhubert import storage
from mhubert.artifacts import Index
from mhubert.clustering import ClusteringConfig
from mhubert.clustering.kmeans import (
    MIN_POINTS_PER_CENTROID,
    as_f32,
    cluster_sums,
    exact_assign,
    kmeans_device,
    seeded_kmeans,
    torch_assign,
    use_all_cores,
)
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

LABEL_METHODS = ("auto", "hnsw", "exact")


def factory_string(cfg: ClusteringConfig) -> str:
    """The factory string with ``{K}`` filled in; its IVF list count must equal ``num_clusters``."""
    s = cfg.index_factory.replace("{K}", str(cfg.num_clusters))
    m = re.search(r"IVF(\d+)", s)
    if m is None:
        raise BadInput(f"index factory {s!r} has no IVF{{K}} coarse quantizer to take labels from")
    if int(m.group(1)) != cfg.num_clusters:
        raise BadInput(f"index factory {s!r} has IVF{m.group(1)} but num_clusters={cfg.num_clusters}; "
                       "make them equal (or write IVF{K})")
    return s


@dataclass(eq=False, slots=True)
class ClusterIndex:
    """A trained (or loaded) faiss index and how to take labels from it.

    ``index`` is the faiss index; ``centroids`` (K, D) float32 live in the ORIGINAL feature space (for
    a factory index: the mean of the training vectors of each cluster, or the back-rotated IVF
    centroid when none was given); ``mode`` is ``factory`` or ``exact``. ``coarse`` and
    ``coarse_sq`` cache the K centroids labels are computed against (transformed space) and their
    squared norms, ``device_cache`` the transform matrices and centroids as tensors per torch
    device; ``kmeans_device`` says where the coarse k-means ran (``cpu``/``gpu``; None when loaded).
    ``slots``: an attribute that is not declared here cannot be set.
    """

    index: faiss.Index
    mode: str
    centroids: np.ndarray | None = None
    kmeans_device: str | None = None
    coarse: np.ndarray | None = field(default=None, init=False, repr=False)
    coarse_sq: np.ndarray | None = field(default=None, init=False, repr=False)
    device_cache: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def num_clusters(self) -> int:
        if self.mode == "exact":
            return int(self.index.ntotal)
        return int(self.ivf().nlist)

    # -- the parts of a factory index -------------------------------------------------------------
    def transforms(self) -> list:
        """The pre-transform chain (the OPQ rotation), outermost first."""
        if isinstance(self.index, faiss.IndexPreTransform):
            return [faiss.downcast_VectorTransform(self.index.chain.at(i))
                    for i in range(self.index.chain.size())]
        return []

    def ivf(self):
        inner = self.index.index if isinstance(self.index, faiss.IndexPreTransform) else self.index
        ivf = faiss.downcast_index(inner)
        if not isinstance(ivf, faiss.IndexIVF):
            raise BadInput(f"index {type(ivf).__name__} has no IVF coarse quantizer")
        return ivf

    def quantizer(self):
        """The index labels are searched in: the IVF coarse quantizer, or the flat index itself."""
        return self.index if self.mode == "exact" else faiss.downcast_index(self.ivf().quantizer)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the pre-transform chain (the OPQ rotation): (N, D) -> (N, d_out)."""
        x = as_f32(x, self.dim)
        for vt in self.transforms():
            x = vt.apply(x)
        return x

    def coarse_centroids(self) -> np.ndarray:
        """The K centroids labels are computed against, in the transformed space: (K, d_out)."""
        if self.coarse is None or len(self.coarse) != self.num_clusters:
            q = self.quantizer()
            self.coarse = np.ascontiguousarray(q.reconstruct_n(0, q.ntotal), dtype=np.float32)
            self.coarse_sq = (self.coarse * self.coarse).sum(1)
        return self.coarse

    # -- labelling ---------------------------------------------------------------------------------
    def resolve_method(self, method: str = "auto") -> str:
        """``hnsw`` or ``exact``: the labelling method ``method`` names for this index. ``auto`` is the
        index's own quantizer search: ``hnsw`` when the coarse quantizer is an HNSW graph (the
        published index), ``exact`` for a flat quantizer or a flat index."""
        if method not in LABEL_METHODS:
            raise BadInput(f"clustering.label_method must be one of {', '.join(LABEL_METHODS)}, "
                           f"got {method!r}")
        is_hnsw = isinstance(self.quantizer(), faiss.IndexHNSW)
        if method == "auto":
            return "hnsw" if is_hnsw else "exact"
        if method == "hnsw" and not is_hnsw:
            raise BadInput(f"clustering.label_method=hnsw, but this {self.mode} index has no HNSW "
                           f"quantizer ({type(self.quantizer()).__name__}): use exact or auto")
        return method

    def label(self, x: np.ndarray, method: str = "auto") -> np.ndarray:
        """Labels (N,) int64 of x (N, D) on the CPU by ``method`` (see :meth:`resolve_method`).

        hnsw: ``ivf.quantizer.search(opq.apply(x), 1)``; exact: the exact nearest coarse centroid
        after the transforms, by GEMM.
        """
        method = self.resolve_method(method)
        x = as_f32(x, self.dim)
        if len(x) == 0:
            return np.zeros(0, dtype=np.int64)
        use_all_cores()
        xt = self.transform(x)
        if method == "exact":
            c = self.coarse_centroids()
            return exact_assign(xt, c, c_sq=self.coarse_sq)
        _, ids = self.quantizer().search(xt, 1)
        return ids[:, 0].astype(np.int64)

    def label_torch(self, x, dtype=None):
        """Exact labels on a torch device by GEMM argmin (the GPU path): x (N, D) tensor -> (N,) long.
        A factory index is rotated by its OPQ matrix first (exact top-1 in the OPQ space)."""
        import torch

        if x.shape[1] != self.dim:
            raise BadInput(f"features have dimension {x.shape[1]} but the index expects {self.dim}")
        key = str(x.device)
        if key not in self.device_cache:
            mats = []
            for vt in self.transforms():
                if not isinstance(vt, faiss.LinearTransform):
                    raise BadInput(f"cannot apply {type(vt).__name__} on the GPU")
                a = torch.from_numpy(faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in)).to(x.device)
                b = torch.from_numpy(faiss.vector_to_array(vt.b)).to(x.device) if vt.have_bias else None
                mats.append((a.T.contiguous(), b))
            self.device_cache[key] = (mats, torch.from_numpy(self.coarse_centroids()).to(x.device))
        mats, c = self.device_cache[key]
        xt = x.float()
        for a_t, b in mats:
            xt = xt @ a_t
            if b is not None:
                xt = xt + b
        return torch_assign(xt, c, dtype)

    def set_ef_search(self, ef: int) -> None:
        q = self.quantizer()
        if isinstance(q, faiss.IndexHNSW):
            q.hnsw.efSearch = int(ef)

    def original_space_centroids(self, x: np.ndarray | None = None,
                                 labels: np.ndarray | None = None) -> np.ndarray:
        """(K, D) centroids in the original space: per-cluster means of ``x`` under ``labels`` where
        given, else the back-transformed coarse centroids (exact for ``exact`` mode)."""
        c = self.coarse_centroids()
        for vt in reversed(self.transforms()):
            c = vt.reverse_transform(c)
        c = np.ascontiguousarray(c, dtype=np.float32)
        if x is not None and labels is not None and self.mode == "factory":
            sums, counts = cluster_sums(as_f32(x, self.dim), labels, len(c))
            nz = counts > 0
            c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        return c


# -- training ----------------------------------------------------------------------------------
def _check_sample(n: int, cfg: ClusteringConfig) -> None:
    k = cfg.num_clusters
    if k < 1:
        raise BadInput(f"num_clusters must be >= 1, got {k}")
    if k > 65535:
        raise BadInput(f"num_clusters={k} does not fit the uint16 labels (max 65535)")
    if n < k:
        raise BadInput(f"the clustering sample has {n} vectors, fewer than num_clusters={k}: "
                       "raise the memory budget, add audio, or lower num_clusters")
    if n < MIN_POINTS_PER_CENTROID * k:
        log.warning("clustering %d vectors into %d clusters: faiss recommends >= %d (%d per centroid); "
                    "the centroids will be noisy", n, k, MIN_POINTS_PER_CENTROID * k,
                    MIN_POINTS_PER_CENTROID)


def train(x: np.ndarray, cfg: ClusteringConfig) -> ClusterIndex:
    """Train a ClusterIndex on the sample x (N, D) float32 (k-means on ``cfg.kmeans_device``).

    Raises BadInput for a sample too small for the index (fewer vectors than clusters, or than the
    OPQ codebooks).
    """
    x = as_f32(x)
    n, d = x.shape
    _check_sample(n, cfg)
    threads = use_all_cores()
    device = kmeans_device(cfg.kmeans_device)
    if cfg.mode == "exact":
        log.info("exact k-means: %d x %d -> K=%d, %d iterations, %d threads, %s", n, d, cfg.num_clusters,
                 cfg.niter, threads, device)
        c = seeded_kmeans(x, cfg.num_clusters, cfg.niter, cfg.seed, cfg.init, device,
                          cfg.seed_rows or None, cfg.seed_trials or None, cfg.coarse_points, cfg.fine_niter)
        flat = faiss.IndexFlatL2(d)
        flat.add(c)
        return ClusterIndex(flat, "exact", c, kmeans_device=device)
    spec = factory_string(cfg)
    try:
        index = faiss.index_factory(d, spec)
    except RuntimeError as e:
        raise BadInput(f"faiss cannot build {spec!r} for {d}-d features: {_first_line(e)}") from e
    ci = ClusterIndex(index, "factory", kmeans_device=device)
    for vt in ci.transforms():
        if isinstance(vt, faiss.OPQMatrix):
            if cfg.opq_niter != vt.niter:
                vt.niter = max(1, int(cfg.opq_niter))
                vt.niter_pq_0 = min(vt.niter_pq_0, max(4, vt.niter))
            ksub = 1 << 8
            if n < ksub:
                raise BadInput(f"the clustering sample has {n} vectors; the OPQ rotation of {spec!r} "
                               f"needs >= {ksub}: raise the memory budget or use mode=exact")
    ci.ivf().cp.seed = cfg.seed
    log.info("training faiss %s on %d x %d (%d threads, k-means on %s)", spec, n, d, threads, device)
    try:
        _train_factory(ci, x, cfg, device)
        if cfg.add_vectors:
            index.add(x)
    except RuntimeError as e:
        raise BadInput(f"faiss could not train {spec!r} on {n} x {d} vectors: {_first_line(e)}") from e
    ci.set_ef_search(cfg.hnsw_ef_search)
    ci.centroids = ci.original_space_centroids(x, ci.label(x))
    return ci


def _train_factory(ci: ClusterIndex, x: np.ndarray, cfg: ClusteringConfig, device: str) -> None:
    """What ``index.train(x)`` does, with the coarse k-means seeded by k-means++.

    The pre-transforms (OPQ) are trained in chain order, the coarse centroids are fitted by
    ``seeded_kmeans`` in the transformed space and added to the (HNSW) quantizer, then the IVF index
    trains only its encoder (faiss skips coarse training when the quantizer already holds nlist
    vectors). Labels stay the quantizer's top-1 after the transforms.
    """
    index, ivf = ci.index, ci.ivf()
    xt = x
    for vt in ci.transforms():
        if not vt.is_trained:
            vt.train(xt)
        xt = vt.apply(xt)
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    # seeded L2 k-means only where faiss would run plain L2 k-means; anything else trains as faiss does
    if (ivf.quantizer.ntotal == 0 and ivf.quantizer.is_trained and not ivf.cp.spherical
            and ivf.metric_type == faiss.METRIC_L2):
        niter = max(int(ivf.cp.niter), int(cfg.niter))
        ivf.quantizer.add(seeded_kmeans(xt, int(ivf.nlist), niter, cfg.seed, cfg.init, device,
                                        cfg.seed_rows or None, cfg.seed_trials or None,
                                        cfg.coarse_points, cfg.fine_niter))
    ivf.train(xt)
    index.is_trained = True


def _first_line(e: Exception) -> str:
    lines = [s for s in str(e).splitlines() if s.strip()]
    for s in lines:
        if "Error" in s or "error" in s or "should" in s:
            return s.strip()
    return lines[-1].strip() if lines else type(e).__name__


# -- files -------------------------------------------------------------------------------------
def save(ci: ClusterIndex, art: Index) -> None:
    """Write ``index.faiss`` (``faiss.serialize_index``) and, when known, ``centroids.npy`` (K, D)
    into the (uncommitted) Index artifact; the caller commits."""
    art.write_bytes(Index.INDEX, faiss.serialize_index(ci.index).tobytes())
    if ci.centroids is not None:
        buf = io.BytesIO()
        np.save(buf, ci.centroids.astype(np.float32))
        art.write_bytes(Index.CENTROIDS, buf.getvalue())


def _read_faiss(index_url: str) -> faiss.Index:
    path = storage.local_path(index_url)
    try:
        if path is not None:
            if not os.path.exists(path):
                raise BadInput(f"faiss index not found: {index_url}")
            return faiss.read_index(path)
        # download to a temporary file: a multi-GB index (the published one is 4.7 GB) is then
        # held once, by faiss, instead of as bytes plus the index
        with tempfile.TemporaryDirectory() as tmp:
            if not storage.exists(index_url):
                raise BadInput(f"faiss index not found: {index_url}")
            return faiss.read_index(storage.download_file(index_url, os.path.join(tmp, "index.faiss")))
    except RuntimeError as e:
        raise BadInput(f"{index_url} is not a faiss index: {_first_line(e)}") from e


def load(index_url: str, centroids_url: str | None = None) -> ClusterIndex:
    """Read any faiss index file from an fsspec URL (local files are read by faiss itself)."""
    index = _read_faiss(index_url)
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    if isinstance(inner, faiss.IndexIVF):
        mode = "factory"
    elif isinstance(inner, faiss.IndexFlat) and not isinstance(index, faiss.IndexPreTransform):
        mode = "exact"
    else:
        raise BadInput(f"{index_url}: cannot take labels from a {type(inner).__name__} "
                       "(need an IVF index, optionally behind OPQ, or a flat index of centroids)")
    ci = ClusterIndex(index, mode)
    if centroids_url and storage.exists(centroids_url):
        ci.centroids = np.load(io.BytesIO(storage.read_bytes(centroids_url)))
    elif mode == "exact":
        ci.centroids = ci.coarse_centroids()
    return ci


def committed_index(index_url: str) -> Index | None:
    """The committed :class:`Index` artifact ``index_url`` is the ``index.faiss`` of, if any."""
    if storage.basename(index_url) != Index.INDEX:
        return None
    art = Index(storage.parent(index_url))
    return art if art.is_committed() else None


def load_artifact(art: Index) -> ClusterIndex:
    """Load a committed Index after checking its files' sizes against the marker."""
    art.verify([n for n in (Index.INDEX, Index.CENTROIDS) if n in art.marker().files], digest=False)
    return load(art.index_url, art.centroids_url)


def open_index(index_url: str) -> ClusterIndex:
    """Load ``index_url``: through its committed Index artifact when it is one (sizes checked, its
    centroids read), else as a plain faiss file."""
    art = committed_index(index_url)
    return load_artifact(art) if art is not None else load(index_url)
