"""``mhubert lid train`` and ``mhubert lid evaluate``."""

from __future__ import annotations

import argparse
import json

ON_CHANGE = ("stop", "resume", "force")  # mhubert.artifacts.ON_CHANGE (kept light: no import here)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lid", help="language-identification head on a frozen model")
    sub = p.add_subparsers(dest="lid_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train the weighted-layer-sum LID head on frozen features")
    t.add_argument("--model", required=True, help="model URI (trainer .pt or transformers directory)")
    t.add_argument("--manifest", required=True, help="manifest URL (languages from its lang column)")
    t.add_argument("--out", required=True, help="output directory URL (head.pt, labels.json, metrics.json)")
    t.add_argument("--preset", default="base", help="preset name or YAML URL (section 'lid')")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a LidTrainConfig field, e.g. --set lid.epochs=100 (or epochs=100)")
    t.add_argument("--on-change", choices=ON_CHANGE, default="stop",
                   help="a committed head made otherwise: stop (default) or force (retrain)")
    t.add_argument("--force", dest="on_change", action="store_const", const="force",
                   help="= --on-change force")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="accuracy, per-language F1, confusion matrix (JSON + PNG)")
    e.add_argument("--model", required=True, help="model URI")
    e.add_argument("--lid", required=True, help="LID head directory (from lid train)")
    e.add_argument("--manifest", required=True, help="manifest URL to evaluate on")
    e.add_argument("--out", required=True, help="output directory URL")
    e.add_argument("--split", choices=["all", "valid"], default="all",
                   help="all utterances, or the head's held-out split (same manifest)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from mhubert.config import load_sections
    from mhubert.lid.train import LidTrainConfig, train_lid

    cfg = load_sections(args.preset, {"lid": LidTrainConfig}, args.overrides)["lid"]
    report = train_lid(args.model, args.manifest, args.out, cfg, on_change=args.on_change,
                       progress=not args.quiet)
    print(json.dumps({k: report[k] for k in ("accuracy", "macro_f1", "split")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mhubert.lid.evaluate import evaluate_lid

    report = evaluate_lid(args.model, args.lid, args.manifest, args.out, args.split, progress=not args.quiet)
    print(json.dumps({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}))
    return 0
