"""Label assignment on 1M x 768 vectors, K=1000: ours vs fairseq ``dump_km_label.py``.

Anchor: fairseq ``ApplyKmeans`` numpy path, as ``dump_km_label.py`` runs it once per utterance:
``argmin(‖x‖² − 2·x·C + ‖C‖²)`` with C and ‖C‖² precomputed, on utterances of ``--utt-frames``
frames (500 = 10 s at 50 Hz). Ours, on batches of ``--batch`` frames (as ``assign.py`` labels a
feature batch):

- ``opq+hnsw``: the mHuBERT-147 labels, ``ivf.quantizer.search(opq.apply(x), 1)`` (HNSW top-1);
- ``opq+gemm``: the same OPQ rotation, then the exact nearest of the K coarse centroids by GEMM in
  the 64-d space (``ClusterIndex.label(x, exact=True)``);
- ``exact gemm numpy`` / ``exact gemm torch``: exact 768-d argmin of ``‖c‖² − 2·x·c`` in chunks.

Exact labels = nearest of the index's (K, 768) centroids (per-cluster means of its training rows),
which is also what the anchor computes; agreement is measured against them.
Data: SYNTHETIC power-law gaussian mixture (``bench_kmeans.mixture``), index trained on ``--train-n``
rows of it with the paper's factory string.

    python benchmarks/bench_assign.py [--n 1000000] [--train-n 100000] [--opq-niter 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def fairseq_apply_kmeans(x: np.ndarray, c_t: np.ndarray, c_norm: np.ndarray) -> np.ndarray:
    """fairseq ApplyKmeans.__call__ (numpy branch) on one utterance's (T, D) features."""
    dist = (x ** 2).sum(1, keepdims=True) - 2 * np.matmul(x, c_t) + c_norm
    return np.argmin(dist, axis=1)


def run(name: str, fn, x: np.ndarray, step: int) -> tuple[np.ndarray, float]:
    out = np.empty(len(x), dtype=np.int64)
    fn(x[:step])                                    # warm-up (allocations, thread pools)
    t = time.perf_counter()
    for s in range(0, len(x), step):
        out[s:s + step] = fn(x[s:s + step])
    sec = time.perf_counter() - t
    print(f"  {name}: {sec:.2f} s", flush=True)
    return out, sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--train-n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--utt-frames", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--opq-niter", type=int, default=50, help="OPQ training iterations (faiss: 50)")
    args = ap.parse_args()

    from bench_kmeans import mixture

    from mhubert.clustering import ClusteringConfig
    from mhubert.clustering import index as cindex
    from mhubert.clustering.quality import agreement

    threads = cindex.use_all_cores()
    torch.set_num_threads(threads)
    x = mixture(args.n, args.dim, args.k, seed=2)
    t = time.perf_counter()
    ci = cindex.train(x[:args.train_n], ClusteringConfig(num_clusters=args.k,
                                                         index_factory="OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr",
                                                         opq_niter=args.opq_niter))
    print(f"data {args.n} x {args.dim}, K={args.k}, {threads} threads; index trained on "
          f"{args.train_n} rows in {time.perf_counter() - t:.1f} s", flush=True)
    c = ci.centroids
    c_t, c_norm = np.ascontiguousarray(c.T), (c ** 2).sum(1, keepdims=True).T
    c_sq = (c * c).sum(1)
    ct = torch.from_numpy(c)

    exact, t_ref = run("fairseq dump_km_label (numpy, per utterance)",
                       lambda b: fairseq_apply_kmeans(b, c_t, c_norm), x, args.utt_frames)
    rows = [("fairseq dump_km_label.py numpy brute force", t_ref, 1.0)]
    for name, fn in [
        ("ours: opq+hnsw top-1 (mHuBERT-147 labels)", lambda b: ci.label(b)),
        ("ours: opq+gemm exact in OPQ space", lambda b: ci.label(b, exact=True)),
        ("ours: exact gemm numpy (768-d)", lambda b: cindex.exact_assign(b, c, c_sq=c_sq)),
        ("ours: exact gemm torch (768-d)",
         lambda b: cindex.torch_assign(torch.from_numpy(b), ct).numpy()),
    ]:
        lab, sec = run(name, fn, x, args.batch)
        rows.append((name, sec, agreement(lab, exact)))
    print(f"\n{'method':46s} {'time s':>7s} {'Mvec/s':>7s} {'speed-up':>9s} {'agree':>7s}")
    for name, sec, agr in rows:
        print(f"{name:46s} {sec:7.2f} {args.n / sec / 1e6:7.3f} {t_ref / sec:9.2f} {agr:7.4f}")


if __name__ == "__main__":
    main()
