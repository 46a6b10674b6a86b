"""What the Kubeflow shell costs locally: the ``prepare`` component under kfp.local's SubprocessRunner
versus the library call it wraps (``mhubert.corpus.manifest.build_manifest``, the anchor), on the
same synthetic corpus, in one process. Also times rendering a PyTorchJob manifest.

    .venv/bin/python benchmarks/bench_pipeline_overhead.py [--utterances 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's components/ package


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=4, help="per language and dataset")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from kfp import local

    from components.prepare import prepare
    from mhubert.corpus.manifest import build_manifest
    from mhubert.corpus.synth import synthesize
    from mhubert.jobs.pytorchjob import JobSpec, render

    warnings.filterwarnings("ignore", category=RuntimeWarning)
    tmp = tempfile.mkdtemp(prefix="bench-pipeline-")
    corpus = f"{tmp}/corpus"
    synthesize(corpus, languages=["en", "de", "fr", "es"], utterances=args.utterances, seed=0, workers=2)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=f"{tmp}/kfp")

    direct, component = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        res = build_manifest(f"{tmp}/direct{r}/corpus", root=corpus, workers=2, progress=False)
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        prepare(corpus_uri=corpus, output_root=f"{tmp}/kfp{r}")
        component.append(time.perf_counter() - t)
    d, c = statistics.median(direct), statistics.median(component)
    print(f"corpus: {len(res.manifest)} utterances")
    print(f"build_manifest (anchor):       {d * 1000:8.1f} ms (median of {args.repeats})")
    print(f"prepare component (kfp.local): {c * 1000:8.1f} ms")
    print(f"ratio component / anchor:      {c / d:8.1f}x  (overhead {c - d:.2f} s per task)")

    spec = JobSpec(name="bench", image="img:1", nodes=4, gpus_per_node=8, train_args=["--out", "s3://b/o"])
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        render(spec)
    print(f"render PyTorchJob: {(time.perf_counter() - t) / n * 1e6:.1f} us per manifest")


if __name__ == "__main__":
    main()
