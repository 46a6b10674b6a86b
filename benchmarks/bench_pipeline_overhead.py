"""Per-task overhead of the Kubeflow shell under kfp.local.

Per-task overhead = a component's wall time under kfp.local's SubprocessRunner minus the same stage
run as a fresh CLI process (``python -m mhubert ...``, what a person would type), on the same inputs,
each time into a fresh output so that no stage reuses a result. Measured on ``prepare`` (``mhubert
corpus manifest``, no torch) and on one torch stage, ``assign`` (``mhubert cluster assign`` of one
shard with MFCC features against an exact k-means index fitted once beforehand).

    .venv/bin/python benchmarks/bench_pipeline_overhead.py [--utterances 4] [--repeats 3]

Prints the medians and the overhead per task; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's components/ and pipelines/ packages


def _cli(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mhubert", *args], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"mhubert {' '.join(args[:2])} failed:\n{r.stderr[-2000:]}")
    return dt


def _timed(fn, *a, **k) -> float:
    """Wall time of a component call under kfp.local (its output, kfp's JSON included, discarded)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        t = time.perf_counter()
        fn(*a, **k)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=4, help="per language and dataset")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from kfp import local

    from components.assign import assign_shard
    from components.prepare import prepare

    warnings.filterwarnings("ignore")
    tmp = tempfile.mkdtemp(prefix="bench-pipeline-")
    corpus = f"{tmp}/corpus"
    _cli("corpus", "synth", "--out", corpus, "--languages", "en", "de", "fr", "es",
         "--utterances", str(args.utterances), "--workers", "2")
    # inputs of the assign stage, made once: manifest, an exact k-means index on MFCC features
    base = f"{tmp}/base"
    _cli("corpus", "manifest", "--root", corpus, "--out", f"{base}/corpus", "--quiet")
    manifest = f"{base}/corpus/manifest.tsv"
    _cli("cluster", "sample", "--manifest", manifest, "--out", f"{base}/clustering", "--preset", "tiny",
         "--num-clusters", "8", "--quiet", "--set", "mode=exact")
    _cli("cluster", "fit", "--out", f"{base}/clustering", "--preset", "tiny", "--num-clusters", "8",
         "--quiet", "--set", "mode=exact")
    index = f"{base}/clustering/index.faiss"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=f"{tmp}/kfp",
               enable_caching=False)

    rows: dict[str, dict[str, list[float]]] = {"prepare": {"cli": [], "kfp": []},
                                               "assign": {"cli": [], "kfp": []}}
    for r in range(args.repeats):
        rows["prepare"]["cli"].append(_cli("corpus", "manifest", "--root", corpus, "--out",
                                           f"{tmp}/cli{r}/corpus", "--quiet"))
        rows["prepare"]["kfp"].append(_timed(prepare, corpus_uri=corpus, output_root=f"{tmp}/kfp{r}"))
        shard = ["--manifest", manifest, "--index", index, "--features", "mfcc", "--layer", "0",
                 "--shard", "0", "--num-shards", "1", "--preset", "tiny", "--quiet"]
        rows["assign"]["cli"].append(_cli("cluster", "assign", "--labels", f"{tmp}/cli{r}/labels", *shard))
        item = {"manifest": manifest, "index": index, "labels": f"{tmp}/kfp{r}/labels", "features": "mfcc",
                "layer": 0, "shard": 0, "num_shards": 1, "preset": "tiny", "model": ""}
        rows["assign"]["kfp"].append(_timed(assign_shard, item=item))

    print(f"corpus: 4 languages x 2 datasets x ~{args.utterances} utterances; medians of {args.repeats}")
    for stage, t in rows.items():
        cli, kfp = statistics.median(t["cli"]), statistics.median(t["kfp"])
        print(f"{stage:>8}: fresh CLI process {cli:6.2f} s | component under kfp.local {kfp:6.2f} s | "
              f"per-task overhead {kfp - cli:+6.2f} s")


if __name__ == "__main__":
    main()
