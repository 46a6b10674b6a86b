"""k-means: greedy k-means++ seeding, Lloyd iterations (faiss), and the exact nearest-centroid argmin.

Lloyd iterations are faiss's (``faiss.Kmeans``: ≤256·k training rows, empty clusters re-split
from big ones), on the GPU when faiss was built with GPU support and a CUDA device is present
(:func:`kmeans_device`). Seeds are greedy k-means++ (Arthur & Vassilvitskii 2007, sklearn's
variant) drawn on a subsample: on clustered data faiss's random starts leave some modes with two
centroids and others with none, which Lloyd iterations do not undo. ``init="random"`` keeps faiss's
random rows (what the paper's ``index.train`` did). The seeding is written here rather than
called from sklearn (``sklearn.cluster.kmeans_plusplus``, the same greedy algorithm) so that it runs
in float32 on one BLAS thread beside faiss's OpenMP pool, with its own seeded generator: the
iteration-1 labels of a given seed stay byte-identical from release to release.

The exact argmin (:func:`exact_assign`, :func:`torch_assign`) is ``argmin_k ||c_k||² - 2 x·c_k``
by GEMM in row chunks (||x||² does not change the argmin): the numpy path on CPU, the torch path
on any device.
"""

from __future__ import annotations

import contextlib
import logging
import os

import faiss
import numpy as np

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
INITS = ("kmeans++", "random")
DEVICES = ("auto", "cpu", "gpu")


def use_all_cores() -> int:
    """Let faiss's OpenMP use every core this process may run on; returns the thread count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    faiss.omp_set_num_threads(n)
    return n


def faiss_gpus() -> int:
    """GPUs faiss can use: 0 for a CPU-only faiss build or without a CUDA device."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


def kmeans_device(requested: str = "auto") -> str:
    """``"gpu"`` or ``"cpu"``: where Lloyd iterations run. ``auto`` takes the GPU when faiss has
    GPU support and CUDA is present; ``gpu`` without one is a clear error, never a silent CPU run."""
    if requested not in DEVICES:
        raise BadInput(f"clustering.kmeans_device must be one of {', '.join(DEVICES)}, got {requested!r}")
    n = faiss_gpus()
    if requested == "gpu" and n == 0:
        raise BadInput("clustering.kmeans_device=gpu, but this faiss has no GPU support or no CUDA "
                       "device is visible (install faiss-gpu on a CUDA machine, or use auto/cpu)")
    return "gpu" if requested == "gpu" or (requested == "auto" and n > 0) else "cpu"


def as_f32(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    """A C-contiguous (N, D) float32 view or copy of ``x``; a clear error for the wrong shape."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise BadInput(f"features must be a 2-D (frames, dim) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise BadInput(f"features have dimension {x.shape[1]} but the index expects {dim}")
    return x


#: bytes of the (rows, K) float32 distance block of one :func:`exact_assign` chunk: small enough to
#: stay in the last-level cache between the GEMM, the scaling and the argmin. On 100k x 64-d rows
#: and K=1000 (the OPQ space), 65,536-row chunks (262 MB blocks) took 2.2 s, 8,192 rows 1.0 s, with
#: the same labels (each row's GEMM does not depend on the chunk).
DISTANCE_BLOCK_BYTES = 1 << 25


def exact_assign(x: np.ndarray, centroids: np.ndarray, chunk: int | None = None,
                 c_sq: np.ndarray | None = None) -> np.ndarray:
    """Exact nearest centroid by GEMM: argmin_k ||c_k||² - 2 x·c_k, in row chunks (default: a
    ``DISTANCE_BLOCK_BYTES`` distance block).

    x: (N, D) float32; centroids: (K, D) float32; returns (N,) int64. ``c_sq`` may hold precomputed
    ||c_k||² (K,).
    """
    x = as_f32(x)
    c = as_f32(centroids, x.shape[1])
    chunk = chunk or max(1024, DISTANCE_BLOCK_BYTES // (4 * len(c)))
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
    """Greedy k-means++ seeds: (k, D) float32 rows of x (N, D).

    Each new seed is the best, by resulting potential Σ min_j ||x - c_j||², of ``n_local_trials``
    (default 2 + ln k) rows drawn with probability ∝ D²(x). With ``sample`` set, seeds are drawn from
    (and the potential measured on) that many random rows. Cost: k passes over the (sub)sample,
    each one (m, D) @ (D, trials) GEMM.
    """
    x = as_f32(x)
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


def seed_sample_rows(k: int) -> int:
    """Rows the k-means++ seeds of k centroids are drawn from."""
    return max(SEED_SAMPLE_ROWS, SEED_POINTS_PER_CENTROID * k)


def seeded_kmeans(x: np.ndarray, k: int, niter: int, seed: int = 0, init: str = "kmeans++",
                  device: str = "cpu", seed_rows: int | None = None,
                  seed_trials: int | None = None, coarse_points: int = 0,
                  fine_niter: int = 0) -> np.ndarray:
    """Lloyd k-means (``faiss.Kmeans``) from k-means++ seeds drawn on ``seed_rows`` rows (default
    :func:`seed_sample_rows`) with ``seed_trials`` candidates each (default 2 + ln k), or from
    faiss's random rows with ``init="random"``; on the GPU with ``device="gpu"`` (a resolved
    :func:`kmeans_device`). x (N, D) -> (k, D) float32.

    ``coarse_points`` > 0 runs the ``niter`` iterations on a random subsample of ``coarse_points``
    rows per centroid (faiss's ``max_points_per_centroid``) and then ``fine_niter`` more on the
    whole sample from where they ended: most iterations cost a fraction, the last ones see every
    row (``benchmarks/bench_kmeans.py`` measures the inertia this costs)."""
    if init not in INITS:
        raise BadInput(f"clustering init must be one of {', '.join(INITS)}, got {init!r}")
    if device not in ("cpu", "gpu"):
        raise BadInput(f"k-means device must be cpu or gpu, got {device!r}")
    x = as_f32(x)
    coarse = {"max_points_per_centroid": int(coarse_points)} if coarse_points > 0 else {}
    km = faiss.Kmeans(x.shape[1], k, niter=max(0, int(niter)), seed=seed, verbose=False,
                      gpu=device == "gpu", **coarse)
    if init == "random":
        km.train(x)
    else:
        km.train(x, init_centroids=kmeans_plusplus(x, k, seed=seed, sample=seed_rows or seed_sample_rows(k),
                                                   n_local_trials=seed_trials or None))
    c = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if coarse and fine_niter > 0:
        fine = faiss.Kmeans(x.shape[1], k, niter=int(fine_niter), seed=seed + 1, verbose=False,
                            gpu=device == "gpu")
        fine.train(x, init_centroids=c)
        c = np.ascontiguousarray(fine.centroids, dtype=np.float32)
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
