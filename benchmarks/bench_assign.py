"""Label assignment on 1M x 768 vectors, K=1000: ours vs fairseq ``dump_km_label.py``, in one run.

Anchor: fairseq ``ApplyKmeans`` numpy path, as ``dump_km_label.py`` runs it once per utterance:
``argmin(‖x‖² − 2·x·C + ‖C‖²)`` with C and ‖C‖² precomputed, on utterances of ``--utt-frames``
frames (500 = 10 s at 50 Hz). It runs in the same process, on the same data, right before ours (and
again after them with ``--anchor-twice``, to show drift in load). Ours, on batches of ``--batch``
frames (as ``assign.py`` labels a feature batch), through ``ClusterIndex.label(x, method)``, the code
``mhubert cluster assign`` runs:

- ``hnsw``: the mHuBERT-147 labels, ``ivf.quantizer.search(opq.apply(x), 1)`` (HNSW top-1);
- ``exact``: the same OPQ rotation, then the exact nearest of the K coarse centroids by GEMM in the
  64-d space (``clustering.label_method=exact``);
- ``exact gemm numpy`` / ``exact gemm torch``: exact 768-d argmin of ``‖c‖² − 2·x·c`` in chunks.

Agreement = fraction of labels equal to the anchor's (the nearest of the index's (K, 768) centroids:
per-cluster means of its training rows). Data: SYNTHETIC power-law gaussian mixture
(``bench_kmeans.mixture``); the index is trained on ``--train-n`` rows with the paper's factory
string. The machine, its load average before and after, and the thread count are printed.

    python benchmarks/bench_assign.py [--n 1000000] [--train-n 100000] [--opq-niter 50]
    python benchmarks/bench_assign.py --n 20000 --train-n 40000 --opq-niter 2   # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, load average {load}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--train-n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--utt-frames", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--opq-niter", type=int, default=50, help="OPQ training iterations (faiss: 50)")
    ap.add_argument("--anchor-twice", action="store_true", help="time the anchor again at the end")
    args = ap.parse_args()

    from bench_kmeans import mixture

    from mhubert.clustering import ClusteringConfig, kmeans
    from mhubert.clustering import index as cindex
    from mhubert.clustering.quality import agreement

    print(f"machine: {machine()}", flush=True)
    threads = kmeans.use_all_cores()
    torch.set_num_threads(threads)
    x = mixture(args.n, args.dim, args.k, seed=2)
    t = time.perf_counter()
    ci = cindex.train(x[:args.train_n], ClusteringConfig(
        num_clusters=args.k, index_factory="OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr", opq_niter=args.opq_niter,
        kmeans_device="cpu"))
    print(f"data {args.n} x {args.dim}, K={args.k}, {threads} threads; index trained on "
          f"{args.train_n} rows in {time.perf_counter() - t:.1f} s", flush=True)
    c = ci.centroids
    c_t, c_norm = np.ascontiguousarray(c.T), (c ** 2).sum(1, keepdims=True).T
    c_sq = (c * c).sum(1)
    ct = torch.from_numpy(c)

    def anchor(b):
        return fairseq_apply_kmeans(b, c_t, c_norm)

    exact, t_ref = run("fairseq dump_km_label (numpy, per utterance)", anchor, x, args.utt_frames)
    rows = [("fairseq dump_km_label.py numpy brute force", t_ref, 1.0)]
    for name, fn in [
        ("ours: label_method=hnsw (mHuBERT-147 labels)", lambda b: ci.label(b, "hnsw")),
        ("ours: label_method=exact (OPQ + 64-d GEMM)", lambda b: ci.label(b, "exact")),
        ("ours: exact gemm numpy (768-d)", lambda b: kmeans.exact_assign(b, c, c_sq=c_sq)),
        ("ours: exact gemm torch (768-d)",
         lambda b: kmeans.torch_assign(torch.from_numpy(b), ct).numpy()),
    ]:
        lab, sec = run(name, fn, x, args.batch)
        rows.append((name, sec, agreement(lab, exact)))
    if args.anchor_twice:
        _, t2 = run("fairseq dump_km_label again", anchor, x, args.utt_frames)
        print(f"  anchor drift: {t2 / t_ref:.3f}x (load now {os.getloadavg()[0]:.2f})")
    print(f"\n{'method':46s} {'time s':>7s} {'Mvec/s':>7s} {'speed-up':>9s} {'agree':>7s}")
    for name, sec, agr in rows:
        print(f"{name:46s} {sec:7.2f} {args.n / sec / 1e6:7.3f} {t_ref / sec:9.2f} {agr:7.4f}")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
