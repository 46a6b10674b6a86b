"""``mhubert train run`` (= ``python -m mhubert.train``) and ``mhubert train render-job``."""

from __future__ import annotations

import argparse
import json


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="base | tiny | a YAML file/URL (default: base)")
    p.add_argument("--manifest", required=True, help="manifest URL (mhubert corpus manifest)")
    p.add_argument("--labels", required=True, help="labels directory URL (with _SUCCESS)")
    p.add_argument("--out", required=True, help="run directory URL (checkpoints, log, model)")
    p.add_argument("--init-from", default=None,
                   help="start the encoder from a transformers directory or a trainer checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. train.lr=1e-4 or data.max_tokens=1400000")
    p.add_argument("--num-classes", type=int, default=None,
                   help="label vocabulary size (default: num_clusters in the labels' _SUCCESS)")


def _run(args: argparse.Namespace) -> int:
    from mhubert.train.trainer import RunArgs, train

    result = train(RunArgs(manifest=args.manifest, labels=args.labels, out=args.out,
                           preset=args.preset, init_from=args.init_from,
                           overrides=list(args.overrides), num_classes=args.num_classes))
    if result.get("skipped") or result.get("finished"):
        print(json.dumps({k: result.get(k) for k in ("step", "final_loss", "skipped")}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="pretrain a HuBERT model (torchrun / PyTorchJob ready)")
    sub = train.add_subparsers(dest="train_command", metavar="ACTION")
    p = sub.add_parser("run", help="train, resuming from the latest checkpoint in --out")
    add_run_args(p)
    p.set_defaults(func=_run)
    # `train render-job` is added by the console command (mhubert.cli), which may import both stages
