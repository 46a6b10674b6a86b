"""Does each pretraining iteration help? ML-SUPERB-style probes per iteration, with their spread.

For each run root of the tiny (or any) recipe (``--run``, one per training seed, each holding
``iter<n>/train/model``), each iteration, and the FBANK baseline (once), trains ``eval superb``
probes (``--tasks``) over ``--probe-seeds`` and prints mean ± sd of CER and LID accuracy per iteration
(over training seeds × probe seeds; n is shown), the sd between training seeds of the per-run means,
and a relative score between FBANK and the best iteration (NOT the leaderboard's SUPERB_s).
Features are extracted once per upstream (shared cache under ``--out``); finished probes are reused
when the script is run again with the same ``--out`` (it resumes).

    python benchmarks/probe_iterations.py --run demo-output/run --run demo-output-seed2/run \
        --manifest demo-output/run/corpus/manifest.tsv --probe-seeds 0,1,2 --tasks lid,asr \
        --train-per-lang 2min --max-steps 1500 --out build/probe-iterations
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from dataclasses import asdict

import numpy as np
import torch

from mhubert import storage
from mhubert.eval.metrics import RELATIVE_SCORE_NOTE, headline, relative_scores
from mhubert.eval.probe import ProbeConfig
from mhubert.eval.splits import SplitConfig
from mhubert.eval.superb import run_superb
from mhubert.eval.upstream import FBANK


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "–"
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return f"{np.mean(vals):.3f} ± {sd:.3f} (n={len(vals)})"


def _done(out: str, train_per_lang: str, probe: ProbeConfig) -> dict | None:
    """The metrics of a finished probe with the same settings (the benchmark resumes), else None."""
    url, tr = storage.join(out, "metrics.json"), storage.join(out, "training.json")
    if storage.is_committed(out) and storage.exists(url) and storage.exists(tr):
        m = storage.read_json(url)
        ran = storage.read_json(tr).get("probe", {})
        same = all(ran.get(k) == v for k, v in asdict(probe).items() if k != "seed")
        if m.get("train_per_lang") == train_per_lang and same:
            return m
    return None


def _dev_loss(out: str) -> float:
    """The best dev CTC loss (nats per utterance) of a finished probe: what still tells upstreams
    apart when greedy decoding emits only blanks (CER 1, LID 0 for every upstream)."""
    return float(min(v for _, v in storage.read_json(storage.join(out, "training.json"))["dev_loss"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="run root (repeat: one per training seed)")
    ap.add_argument("--manifest", default=None, help="default: <first run>/corpus/manifest.tsv")
    ap.add_argument("--iterations", default="1,2,3")
    ap.add_argument("--probe-seeds", default="0,1,2")
    ap.add_argument("--tasks", default="lid,asr")
    ap.add_argument("--train-per-lang", default="2min")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--out", default="build/probe-iterations")
    ap.add_argument("--lr", type=float, default=ProbeConfig.lr, help="probe learning rate (ML-SUPERB: 1e-4)")
    ap.add_argument("--batch-size", type=int, default=ProbeConfig.batch_size)
    ap.add_argument("--eval-interval", type=int, default=0, help="dev checks every N updates (0: steps/10)")
    ap.add_argument("--dev-max-seconds", type=float, default=SplitConfig.dev_max_seconds, help="per language")
    ap.add_argument("--test-max-seconds", type=float, default=SplitConfig.test_max_seconds,
                    help="per language")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    probe = ProbeConfig(max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
                        eval_interval=args.eval_interval)
    split = SplitConfig(dev_max_seconds=args.dev_max_seconds, test_max_seconds=args.test_max_seconds)
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = args.manifest or storage.join(args.run[0], "corpus", "manifest.tsv")
    iterations = [int(x) for x in args.iterations.split(",")]
    seeds = [int(x) for x in args.probe_seeds.split(",")]
    tasks = args.tasks.split(",")
    upstreams: list[tuple[str, int | None, str]] = [(FBANK, None, FBANK)]
    for r, run in enumerate(args.run):
        for n in iterations:
            upstreams.append((f"iter{n}", r, storage.join(run, f"iter{n}", "train", "model")))

    # rows[(label, task, metric)] -> {run index: [values over probe seeds]}
    rows: dict[tuple[str, str, str], dict] = defaultdict(lambda: defaultdict(list))
    t0 = time.monotonic()
    for label, r, uri in upstreams:
        tag = f"{label}-run{r}" if r is not None else label
        cache = storage.join(args.out, "cache", tag)
        for task in tasks:
            for seed in seeds:
                out = storage.join(args.out, tag, task, f"seed{seed}")
                m = _done(out, args.train_per_lang, probe) or run_superb(
                    uri, manifest, out, task=task, train_per_lang=args.train_per_lang,
                    seed=seed, cache_dir=cache, probe=probe, split=split)
                figures = {**headline(m), "dev_ctc_loss": _dev_loss(out)}
                for metric, v in figures.items():
                    rows[(label, task, metric)][r].append(v)
                print(f"[{time.monotonic() - t0:7.0f}s] {tag} {task} seed{seed}: "
                      f"{json.dumps(figures)}", flush=True)

    print(f"\nmanifest {manifest}; {len(args.run)} training seed(s) x {len(seeds)} probe seed(s); "
          f"{args.train_per_lang} per language; {args.max_steps} probe steps of {args.batch_size} at lr "
          f"{args.lr:g}; dev_ctc_loss = best dev CTC loss, nats per utterance (lower is better)")
    print("| upstream | task | metric | mean ± sd over all probes | sd between training seeds |")
    print("|---|---|---|---|---|")
    summary = {}
    for (label, task, metric), by_run in rows.items():
        allv = [v for vs in by_run.values() for v in vs]
        per_run = [float(np.mean(vs)) for vs in by_run.values()]
        between = f"{np.std(per_run, ddof=1):.3f}" if len(per_run) > 1 else "–"
        print(f"| {label} | {task} | {metric} | {_fmt(allv)} | {between} |")
        summary[f"{label}/{task}/{metric}"] = {"values": allv, "mean": float(np.mean(allv)),
                                               "sd": float(np.std(allv, ddof=1)) if len(allv) > 1 else 0.0}
    for task in tasks:
        means = {label: {metric: float(np.mean([v for vs in by_run.values() for v in vs]))
                         for (lab, t, metric), by_run in rows.items()
                         if lab == label and t == task and metric != "dev_ctc_loss"}
                 for label in dict.fromkeys(u[0] for u in upstreams)}
        rel = relative_scores(means, baseline=FBANK)
        print(f"\n{task}: relative score per upstream {rel['scores']}")
        summary[f"relative/{task}"] = rel
    print(f"({RELATIVE_SCORE_NOTE})")
    storage.atomic_write_json(storage.join(args.out, "summary.json"), summary)
    print(f"\nwrote {os.path.join(args.out, 'summary.json')}; took {(time.monotonic() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
