"""faiss clustering indices: train, label, save, load.

Two modes:

- ``factory`` (the mHuBERT-147 method): ``faiss.index_factory(D, "OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr")``
  is trained on the sample; a vector's label is the IVF coarse quantizer's top-1 (HNSW search over the
  K centroids) after the OPQ rotation. PQ codes are never used for labels.
- ``exact``: flat k-means (``faiss.Kmeans``); a label is the exact nearest centroid.

Both k-means runs (the flat one, and the IVF coarse quantizer's in the OPQ space) start, by default
(``init=kmeans++``), from greedy k-means++ seeds drawn on a subsample (``kmeans_plusplus``), not from
faiss's random rows: on clustered data random starts leave some modes with two centroids and others
with none, which Lloyd iterations do not undo. ``init=random`` keeps faiss's random rows (what the
paper's ``index.train`` did): lower inertia is not always more informative labels, e.g. on the 64-d
features of the ``tiny`` model random starts gave labels with more language information
(docs/benchmarks.md, "The tiny recipe").

Any index that faiss can read is accepted for labelling: an ``IndexPreTransform`` over an IVF index
(e.g. the published ``mhubert147_faiss.index``), a bare IVF index, or a flat index of centroids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass

import faiss
import numpy as np

from mhubert import storage
from mhubert.clustering import ClusteringConfig
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

#: faiss warns below this many training points per centroid (``Clustering.h``).
MIN_POINTS_PER_CENTROID = 39
#: k-means++ seeds are drawn from max(SEED_SAMPLE_ROWS, SEED_POINTS_PER_CENTROID·K) random rows:
#: sklearn's MiniBatchKMeans (fairseq, batch 10000) seeds on 3·batch_size = 30,000. Fewer costs
#: inertia: on the 50k x 768, K=250 benchmark mixture 16 rows per centroid (4,000) ended 4 % above
#: sklearn, 30,000 rows 0.2 % below.
SEED_SAMPLE_ROWS = 30_000
SEED_POINTS_PER_CENTROID = 16


def use_all_cores() -> int:
    """Let faiss's OpenMP use every core this process may run on; returns the thread count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    faiss.omp_set_num_threads(n)
    return n


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


def _as_f32(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise BadInput(f"features must be a 2-D (frames, dim) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise BadInput(f"features have dimension {x.shape[1]} but the index expects {dim}")
    return x


def exact_assign(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536,
                 c_sq: np.ndarray | None = None) -> np.ndarray:
    """Exact nearest centroid by GEMM: argmin_k ||c_k||² - 2 x·c_k, in row chunks.

    x: (N, D) float32; centroids: (K, D) float32; returns (N,) int64. ``c_sq`` may hold precomputed
    ||c_k||² (K,). ||x||² is dropped: it does not change the argmin.
    """
    x = _as_f32(x)
    c = _as_f32(centroids, x.shape[1])
    if c_sq is None:
        c_sq = (c * c).sum(1)
    ct = np.ascontiguousarray(c.T)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        d = x[s:s + chunk] @ ct
        d *= -2.0
        d += c_sq
        out[s:s + chunk] = d.argmin(1)
    return out


def torch_assign(x, centroids, dtype=None, chunk: int = 1 << 20):
    """Exact nearest centroid on a torch device (CUDA: bf16/fp32 GEMM). x (N, D), centroids (K, D)
    tensors on the same device; returns (N,) int64 tensor. bf16 may flip near-ties."""
    import torch

    dtype = dtype or torch.float32
    c = centroids.to(dtype)
    c_sq = (centroids.float() ** 2).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], chunk):
        d = (x[s:s + chunk].to(dtype) @ c.T).float()
        out[s:s + chunk] = (c_sq - 2.0 * d).argmin(1)
    return out


def kmeans_plusplus(x: np.ndarray, k: int, seed: int = 0, sample: int | None = None,
                    n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeds (Arthur & Vassilvitskii 2007; sklearn's variant): (k, D) float32 rows of x.

    x: (N, D). Each new seed is the best, by resulting potential Σ min_j ||x - c_j||², of
    ``n_local_trials`` (default 2 + ln k) rows drawn with probability ∝ D²(x). With ``sample`` set,
    seeds are drawn from (and the potential measured on) that many random rows. Cost: k passes over
    the (sub)sample, each one (m, D) @ (D, trials) GEMM.
    """
    x = _as_f32(x)
    n = len(x)
    if not 1 <= k <= n:
        raise BadInput(f"cannot draw {k} k-means++ seeds from {n} vectors")
    rng = np.random.default_rng(seed)
    if sample is not None and n > max(sample, k):
        x = x[np.sort(rng.choice(n, max(sample, k), replace=False))]
    trials = int(n_local_trials or 2 + int(np.log(k)))
    with _one_blas_thread():
        idx = _greedy_seeds(x, k, trials, rng)
    return np.ascontiguousarray(x[idx])


def _one_blas_thread():
    """k small GEMMs in a row run faster on one BLAS thread than on two fighting faiss's OpenMP pool
    or a loaded machine (2.0 s -> 0.3 s for 250 seeds from 4000 x 64 on 2 shared cores).
    threadpoolctl (installed with scikit-learn) is optional: without it, nothing is limited."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _greedy_seeds(x: np.ndarray, k: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices (k,) of the greedy k-means++ seeds of x (m, D)."""
    m = len(x)
    x_sq = np.einsum("ij,ij->i", x, x)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(m)
    d = np.maximum(x_sq - 2.0 * (x @ x[idx[0]]) + x_sq[idx[0]], 0.0)
    for i in range(1, k):
        cs = np.cumsum(d, dtype=np.float64)
        if cs[-1] <= 0:             # fewer distinct rows than k: the rest are duplicates
            idx[i:] = rng.integers(m, size=k - i)
            break
        cand = np.minimum(np.searchsorted(cs, rng.random(trials) * cs[-1], side="right"), m - 1)
        g = x @ x[cand].T            # (m, trials)
        g *= -2.0
        g += x_sq[:, None]
        g += x_sq[cand][None]
        np.maximum(g, 0.0, out=g)
        np.minimum(g, d[:, None], out=g)
        best = int(g.sum(0, dtype=np.float64).argmin())
        idx[i] = cand[best]
        d = np.ascontiguousarray(g[:, best])
    return idx


INITS = ("kmeans++", "random")


def seeded_kmeans(x: np.ndarray, k: int, niter: int, seed: int = 0, init: str = "kmeans++") -> np.ndarray:
    """Lloyd k-means (``faiss.Kmeans``: ≤256·k training rows, empty clusters re-split from big ones)
    from k-means++ seeds drawn on a subsample (``SEED_SAMPLE_ROWS``), or from faiss's random rows
    with ``init="random"``. x (N, D) -> (k, D) float32."""
    if init not in INITS:
        raise BadInput(f"clustering init must be one of {', '.join(INITS)}, got {init!r}")
    x = _as_f32(x)
    km = faiss.Kmeans(x.shape[1], k, niter=max(0, int(niter)), seed=seed, verbose=False)
    if init == "random":
        km.train(x)
    else:
        km.train(x, init_centroids=kmeans_plusplus(
            x, k, seed=seed, sample=max(SEED_SAMPLE_ROWS, SEED_POINTS_PER_CENTROID * k)))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


@dataclass
class ClusterIndex:
    """A trained (or loaded) faiss index and how to take labels from it.

    ``index`` is the faiss index; ``centroids`` (K, D) float32 live in the ORIGINAL feature space (for
    a factory index: the mean of the training vectors of each cluster, or the back-rotated IVF
    centroid when none was given); ``mode`` is ``factory`` or ``exact``.
    """

    index: faiss.Index
    mode: str
    centroids: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def num_clusters(self) -> int:
        if self.mode == "exact":
            return int(self.index.ntotal)
        return int(self._ivf().nlist)

    # -- the parts of a factory index -------------------------------------------------------------
    def _transforms(self) -> list:
        if isinstance(self.index, faiss.IndexPreTransform):
            return [faiss.downcast_VectorTransform(self.index.chain.at(i))
                    for i in range(self.index.chain.size())]
        return []

    def _ivf(self):
        inner = self.index.index if isinstance(self.index, faiss.IndexPreTransform) else self.index
        ivf = faiss.downcast_index(inner)
        if not isinstance(ivf, faiss.IndexIVF):
            raise BadInput(f"index {type(ivf).__name__} has no IVF coarse quantizer")
        return ivf

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the pre-transform chain (the OPQ rotation): (N, D) -> (N, d_out)."""
        x = _as_f32(x, self.dim)
        for vt in self._transforms():
            x = vt.apply(x)
        return x

    def coarse_centroids(self) -> np.ndarray:
        """The K centroids labels are computed against, in the transformed space: (K, d_out)."""
        cached = getattr(self, "_coarse", None)
        if cached is not None and len(cached) == self.num_clusters:
            return cached
        if self.mode == "exact":
            c = self.index.reconstruct_n(0, self.index.ntotal)
        else:
            q = self._ivf().quantizer
            c = q.reconstruct_n(0, q.ntotal)
        self._coarse = np.ascontiguousarray(c, dtype=np.float32)
        self._coarse_sq = (self._coarse * self._coarse).sum(1)
        return self._coarse

    # -- labelling ---------------------------------------------------------------------------------
    def label(self, x: np.ndarray, exact: bool = False) -> np.ndarray:
        """Labels (N,) int64 of x (N, D).

        factory: ``ivf.quantizer.search(opq.apply(x), 1)`` (HNSW top-1), or with ``exact=True`` the
        exact nearest IVF centroid in the OPQ space (by GEMM). exact mode: nearest centroid.
        """
        x = _as_f32(x, self.dim)
        if len(x) == 0:
            return np.zeros(0, dtype=np.int64)
        use_all_cores()
        if self.mode == "exact":
            return exact_assign(x, self.coarse_centroids(), c_sq=self._coarse_sq)
        xt = self.transform(x)
        if exact:
            return exact_assign(xt, self.coarse_centroids(), c_sq=self._coarse_sq)
        _, ids = self._ivf().quantizer.search(xt, 1)
        return ids[:, 0].astype(np.int64)

    def label_torch(self, x, dtype=None):
        """Labels on a torch device by exact GEMM argmin (the GPU path): x (N, D) tensor -> (N,) long.
        A factory index is rotated by its OPQ matrix first (exact top-1 in the OPQ space)."""
        import torch

        if x.shape[1] != self.dim:
            raise BadInput(f"features have dimension {x.shape[1]} but the index expects {self.dim}")
        xt = x.float()
        for vt in self._transforms():
            if not isinstance(vt, faiss.LinearTransform):
                raise BadInput(f"cannot apply {type(vt).__name__} on the GPU")
            a = torch.from_numpy(faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in)).to(x.device)
            xt = xt @ a.T
            if vt.have_bias:
                xt = xt + torch.from_numpy(faiss.vector_to_array(vt.b)).to(x.device)
        c = torch.from_numpy(self.coarse_centroids()).to(x.device)
        return torch_assign(xt, c, dtype)

    def set_ef_search(self, ef: int) -> None:
        if self.mode != "factory":
            return
        q = faiss.downcast_index(self._ivf().quantizer)
        if isinstance(q, faiss.IndexHNSW):
            q.hnsw.efSearch = int(ef)

    def original_space_centroids(self, x: np.ndarray | None = None,
                                 labels: np.ndarray | None = None) -> np.ndarray:
        """(K, D) centroids in the original space: per-cluster means of ``x`` under ``labels`` where
        given, else the back-transformed coarse centroids (exact for ``exact`` mode)."""
        c = self.coarse_centroids()
        for vt in reversed(self._transforms()):
            c = vt.reverse_transform(c)
        c = np.ascontiguousarray(c, dtype=np.float32)
        if x is not None and labels is not None and self.mode == "factory":
            sums, counts = cluster_sums(_as_f32(x, self.dim), labels, len(c))
            nz = counts > 0
            c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        return c


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int, chunk: int = 65536
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (k, D) float64 and counts (k,) int64 of x (N, D) under labels (N,).

    Sorts each row chunk by label and sums runs with ``np.add.reduceat`` (``np.add.at`` is ~10x
    slower: 6.8 s for 50k x 768 on 2 loaded cores).
    """
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    for s in range(0, len(x), chunk):
        lab = labels[s:s + chunk]
        order = np.argsort(lab, kind="stable")
        sl = lab[order]
        starts = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
        sums[sl[starts]] += np.add.reduceat(x[s:s + chunk][order], starts, axis=0, dtype=np.float64)
    return sums, np.bincount(labels, minlength=k)


def _check_sample(n: int, d: int, cfg: ClusteringConfig) -> None:
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
    """Train a ClusterIndex on the sample x (N, D) float32.

    Raises BadInput for a sample too small for the index (fewer vectors than clusters, or than the
    OPQ codebooks).
    """
    x = _as_f32(x)
    n, d = x.shape
    _check_sample(n, d, cfg)
    threads = use_all_cores()
    if cfg.mode == "exact":
        log.info("exact k-means: %d x %d -> K=%d, %d iterations, %d threads", n, d, cfg.num_clusters,
                 cfg.niter, threads)
        c = seeded_kmeans(x, cfg.num_clusters, cfg.niter, cfg.seed, cfg.init)
        flat = faiss.IndexFlatL2(d)
        flat.add(c)
        return ClusterIndex(flat, "exact", c)
    if cfg.mode != "factory":
        raise BadInput(f"clustering mode must be 'factory' or 'exact', got {cfg.mode!r}")
    spec = factory_string(cfg)
    try:
        index = faiss.index_factory(d, spec)
    except RuntimeError as e:
        raise BadInput(f"faiss cannot build {spec!r} for {d}-d features: {_first_line(e)}") from e
    ci = ClusterIndex(index, "factory")
    for vt in ci._transforms():
        if isinstance(vt, faiss.OPQMatrix):
            if cfg.opq_niter != vt.niter:
                vt.niter = max(1, int(cfg.opq_niter))
                vt.niter_pq_0 = min(vt.niter_pq_0, max(4, vt.niter))
            ksub = 1 << 8
            if n < ksub:
                raise BadInput(f"the clustering sample has {n} vectors; the OPQ rotation of {spec!r} "
                               f"needs >= {ksub}: raise the memory budget or use mode=exact")
    ivf = ci._ivf()
    ivf.cp.seed = cfg.seed
    log.info("training faiss %s on %d x %d (%d threads)", spec, n, d, threads)
    try:
        _train_factory(ci, x, cfg)
        if cfg.add_vectors:
            index.add(x)
    except RuntimeError as e:
        raise BadInput(f"faiss could not train {spec!r} on {n} x {d} vectors: {_first_line(e)}") from e
    ci.set_ef_search(cfg.hnsw_ef_search)
    labels = ci.label(x)
    ci.centroids = ci.original_space_centroids(x, labels)
    return ci


def _train_factory(ci: ClusterIndex, x: np.ndarray, cfg: ClusteringConfig) -> None:
    """What ``index.train(x)`` does, with the coarse k-means seeded by k-means++.

    The pre-transforms (OPQ) are trained in chain order, the coarse centroids are fitted by
    ``seeded_kmeans`` in the transformed space and added to the (HNSW) quantizer, then the IVF index
    trains only its encoder (faiss skips coarse training when the quantizer already holds nlist
    vectors). Labels stay the quantizer's top-1 after the transforms.
    """
    index, ivf = ci.index, ci._ivf()
    xt = x
    for vt in ci._transforms():
        if not vt.is_trained:
            vt.train(xt)
        xt = vt.apply(xt)
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    # seeded L2 k-means only where faiss would run plain L2 k-means; anything else trains as faiss does
    if (ivf.quantizer.ntotal == 0 and ivf.quantizer.is_trained and not ivf.cp.spherical
            and ivf.metric_type == faiss.METRIC_L2):
        niter = max(int(ivf.cp.niter), int(cfg.niter))
        c = seeded_kmeans(xt, int(ivf.nlist), niter, cfg.seed, cfg.init)
        ivf.quantizer.add(c)
    ivf.train(xt)
    index.is_trained = True


def _first_line(e: Exception) -> str:
    lines = [s for s in str(e).splitlines() if s.strip()]
    for s in lines:
        if "Error" in s or "error" in s or "should" in s:
            return s.strip()
    return lines[-1].strip() if lines else type(e).__name__


def save(ci: ClusterIndex, index_url: str, centroids_url: str | None = None) -> None:
    """Write the index (``faiss.serialize_index``) and, when known, its (K, D) centroids ``.npy``."""
    storage.atomic_write(index_url, faiss.serialize_index(ci.index).tobytes())
    if centroids_url and ci.centroids is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, ci.centroids.astype(np.float32))
        storage.atomic_write(centroids_url, buf.getvalue())


def load(index_url: str, centroids_url: str | None = None) -> ClusterIndex:
    """Read any faiss index file from an fsspec URL (local files are memory-mapped by faiss itself)."""
    path = storage.local_path(index_url)
    try:
        if path is not None:
            if not os.path.exists(path):
                raise BadInput(f"faiss index not found: {index_url}")
            index = faiss.read_index(path)
        else:
            # download to a temporary file: a multi-GB index (the published one is 4.7 GB) is then
            # held once, by faiss, instead of as bytes plus the index
            with tempfile.TemporaryDirectory() as tmp:
                if not storage.exists(index_url):
                    raise BadInput(f"faiss index not found: {index_url}")
                local = storage.download_file(index_url, os.path.join(tmp, "index.faiss"))
                index = faiss.read_index(local)
    except RuntimeError as e:
        raise BadInput(f"{index_url} is not a faiss index: {_first_line(e)}") from e
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
        import io

        ci.centroids = np.load(io.BytesIO(storage.read_bytes(centroids_url)))
    elif mode == "exact":
        ci.centroids = ci.coarse_centroids()
    return ci


def fit(sample_dir: str, out_dir: str, cfg: ClusteringConfig, force: bool = False) -> dict:
    """Train on the committed sample at ``sample_dir``; write ``index.faiss``, ``centroids.npy`` and
    ``index.json`` (last) under ``out_dir``. A finished fit is a no-op unless ``force``.

    faiss trains the coarse k-means on at most 256·K points and the OPQ on 65,536, so unless
    ``add_vectors`` only 256·K random rows of the sample are read into memory.
    """
    from mhubert.clustering import sample as csample

    done = storage.join(out_dir, "index.json")
    if storage.exists(done) and not force:
        log.info("index in %s is already trained", out_dir)
        return storage.read_json(done)
    info = csample.read_info(sample_dir)
    max_rows = None if cfg.add_vectors else 256 * cfg.num_clusters
    x, _ = csample.load_sample(sample_dir, max_rows=max_rows, seed=cfg.seed)
    ci = train(x, cfg)
    save(ci, storage.join(out_dir, "index.faiss"), storage.join(out_dir, "centroids.npy"))
    meta = {"mode": ci.mode, "num_clusters": ci.num_clusters, "dim": ci.dim,
            "index_factory": factory_string(cfg) if cfg.mode == "factory" else None,
            "trained_on": int(len(x)), "sample_frames": int(info["num_frames"]),
            "label_rate": int(info["label_rate"]), "features": info.get("features"),
            "sample": sample_dir}
    storage.atomic_write_json(done, meta)
    return meta
