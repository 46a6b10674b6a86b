"""``mhubert model export | import``: checkpoint conversion from the command line."""

from __future__ import annotations

import argparse

from mhubert import storage

FORMATS = ("hf", "fairseq")


def _export(args: argparse.Namespace) -> int:
    from mhubert.model.convert import load_model, load_pretrain, save_hf
    from mhubert.model.fairseq import save_fairseq

    if args.format == "fairseq":
        model, meta = load_pretrain(args.checkpoint)
        label_rate = int(args.label_rate or meta.get("label_rate") or 50)
        save_fairseq(model, args.out, label_rate=label_rate, num_updates=int(meta.get("step", 0)))
        print(f"wrote fairseq HuBERT checkpoint ({model.num_classes} classes + 4 specials, "
              f"label_rate {label_rate}) to {args.out}")
        return 0
    model = load_model(args.checkpoint)
    save_hf(model, args.out)
    print(f"wrote transformers model ({sum(p.numel() for p in model.parameters()):,} parameters) "
          f"to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from mhubert.model.convert import save_checkpoint_model, save_hf
    from mhubert.model.fairseq import load_fairseq

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
    e = sub.add_parser("export", help="trainer checkpoint / run / model dir -> transformers directory "
                                      "or fairseq .pt")
    e.add_argument("--checkpoint", required=True,
                   help="URL of a trainer .pt, a training run directory, a transformers directory "
                        "(hf only) or a fairseq .pt")
    e.add_argument("--out", required=True, help="output URL: a directory (hf) or a .pt file (fairseq)")
    e.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: transformers HubertModel directory (default); fairseq: a checkpoint in "
                        "the layout of mHuBERT-147's released .pt (needs the prediction head)")
    e.add_argument("--label-rate", type=int, default=None,
                   help="fairseq cfg label_rate in Hz (default: the checkpoint's, else 50)")
    e.set_defaults(func=_export)
    i = sub.add_parser("import", help="fairseq HuBERT checkpoint -> transformers dir + pretrain.pt")
    i.add_argument("--fairseq", required=True, help="URL of a fairseq checkpoint .pt")
    i.add_argument("--out", required=True, help="output directory URL")
    i.set_defaults(func=_import)
