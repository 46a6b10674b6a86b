"""``mhubert eval superb``: an ML-SUPERB-style ASR/LID probe of a frozen upstream.

Imports nothing heavy at module level (the stage, torch and the model load on use)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate frozen upstreams (ML-SUPERB-style probes)")
    sub = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    s = sub.add_parser("superb", help="train and test one CTC probe (lid | asr | asr+lid) on frozen features",
                       description="ML-SUPERB-style probe: weighted sum of the upstream's hidden states, "
                                   "2-block transformer, CTC; writes metrics.json and plots to --out.")
    s.add_argument("--model", required=True,
                   help="'fbank', a transformers directory, a checkpoint of ours or a fairseq .pt")
    s.add_argument("--manifest", required=True,
                   help="manifest URL (transcripts and speakers from utterances.tsv beside it)")
    s.add_argument("--task", required=True, choices=["lid", "asr", "asr+lid"])
    s.add_argument("--train-per-lang", default="10min", metavar="DURATION",
                   help="training audio per language: 10min or 1h (standard) or e.g. 2min (default 10min)")
    s.add_argument("--out", required=True, help="output directory URL")
    s.add_argument("--max-steps", type=int, default=None, help="probe updates (default 3000)")
    s.add_argument("--seed", type=int, default=0, help="probe seed (splits, init, batches)")
    s.add_argument("--few-shot", default="", metavar="LANGS",
                   help="comma-separated languages trained on 5 utterances only")
    s.add_argument("--cache", default=None, metavar="URL",
                   help="feature cache directory (default <out>/cache)")
    s.add_argument("--device", default="cpu", help="torch device of the upstream and the probe")
    s.set_defaults(func=_superb)


def _superb(args: argparse.Namespace) -> int:
    from mhubert.errors import BadInput

    if args.max_steps is not None and args.max_steps < 1:
        raise BadInput(f"--max-steps must be >= 1, got {args.max_steps}")
    from mhubert.eval.superb import run_superb

    few = [x.strip() for x in args.few_shot.split(",") if x.strip()]
    m = run_superb(args.model, args.manifest, args.out, task=args.task,
                   train_per_lang=args.train_per_lang, max_steps=args.max_steps, seed=args.seed,
                   few_shot=few, cache_dir=args.cache, device=args.device)
    print(json.dumps({k: m[k] for k in ("task", "upstream", "cer", "lid_accuracy") if k in m}))
    return 0
