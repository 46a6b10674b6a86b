"""A synthetic N-row manifest (30M ≈ mHuBERT-147's 90k hours): load time, one two-level epoch draw,
the corpus stats (with the α/β probabilities), and peak RSS of the process doing it (target ≤ 4 GB).

    python benchmarks/bench_manifest.py --rows 30000000 --dir /tmp/bench-manifest

The manifest is written by a child process first, so the peak RSS reported is the reader's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def write(path: str, rows: int, languages: int, datasets: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    # a steep language imbalance (Zipf-like) and a few datasets per language, as real corpora
    lang_p = 1.0 / np.arange(1, languages + 1) ** 1.2
    lang_p /= lang_p.sum()
    names = [f"l{i:03d}" for i in range(languages)]
    chunk = 1_000_000
    with open(path, "w", encoding="utf-8") as f:
        f.write("s3://bucket/corpora\n")
        for a in range(0, rows, chunk):
            b = min(a + chunk, rows)
            lang = rng.choice(languages, size=b - a, p=lang_p)
            ds = (lang + rng.integers(0, 3, size=b - a)) % datasets
            n = rng.integers(32_000, 480_000, size=b - a)
            f.write("".join(f"d{d:02d}/{names[la]}/{a + k:09d}.flac\t{x}\t{names[la]}\td{d:02d}\n"
                            for k, (la, d, x) in enumerate(zip(lang.tolist(), ds.tolist(), n.tolist(),
                                                               strict=True))))


def measure(path: str, alpha: float, beta: float) -> dict:
    from mhubert.artifacts.manifest import Manifest
    from mhubert.corpus.report import corpus_stats
    from mhubert.data.sampling import TwoLevelSampler

    t0 = time.perf_counter()
    m = Manifest.read(path)
    t1 = time.perf_counter()
    sampler = TwoLevelSampler(m.group_ids(), alpha=alpha, beta=beta, seed=0)
    draw = sampler.epoch(0)
    t2 = time.perf_counter()
    st = corpus_stats(m, [], alpha, beta)
    t3 = time.perf_counter()
    assert len(draw) == len(m) and st["total"]["utterances"] == len(m)
    return {"rows": len(m), "languages": len(m.languages), "groups": len(sampler.groups),
            "load_s": round(t1 - t0, 2), "epoch_draw_s": round(t2 - t1, 2),
            "stats_s": round(t3 - t2, 2), "hours": round(st["total"]["hours"], 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "file_gb": round(os.path.getsize(path) / 2**30, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--languages", type=int, default=147)
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--dir", default="/tmp/bench-manifest")
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--beta", type=float, default=0.9)
    ap.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"manifest-{args.rows}.tsv")
    if args.write_only:
        write(path, args.rows, args.languages, args.datasets)
        return
    if not os.path.exists(path):
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--languages",
                        str(args.languages), "--datasets", str(args.datasets), "--dir", args.dir,
                        "--write-only"], check=True)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(json.dumps(measure(path, args.alpha, args.beta)))


if __name__ == "__main__":
    main()
