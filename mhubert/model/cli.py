"""``mhubert model export | import``: checkpoint conversion from the command line."""

from __future__ import annotations

import argparse

from mhubert import storage


def _export(args: argparse.Namespace) -> int:
    from mhubert.model.convert import load_model, save_hf

    model = load_model(args.checkpoint)
    save_hf(model, args.out)
    print(f"wrote transformers model ({sum(p.numel() for p in model.parameters()):,} parameters) "
          f"to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from mhubert.model.convert import load_fairseq, save_checkpoint_model, save_hf

    model = load_fairseq(args.fairseq)
    # the full pretraining model (for --init-from) first, the transformers dir + _SUCCESS last
    save_checkpoint_model(model, storage.join(args.out, "pretrain.pt"))
    save_hf(model, args.out)
    print(f"imported {args.fairseq}: {model.num_classes} classes; wrote {args.out} "
          f"(transformers files + pretrain.pt)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="convert HuBERT checkpoints")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="trainer checkpoint (.pt) or model dir -> transformers directory")
    e.add_argument("--checkpoint", required=True, help="URL of a trainer .pt or a transformers directory")
    e.add_argument("--out", required=True, help="output directory URL")
    e.set_defaults(func=_export)
    i = sub.add_parser("import", help="fairseq HuBERT checkpoint -> transformers dir + pretrain.pt")
    i.add_argument("--fairseq", required=True, help="URL of a fairseq checkpoint .pt")
    i.add_argument("--out", required=True, help="output directory URL")
    i.set_defaults(func=_import)
