"""``mhubert model export | import``: checkpoint conversion from the command line."""

from __future__ import annotations

import argparse

from mhubert import storage
from mhubert.errors import BadInput

FORMATS = ("hf", "fairseq", "onnx", "onnx-int8", "hf-classifier")


def _export_fairseq(args: argparse.Namespace) -> int:
    from mhubert.model.convert import load_pretrain
    from mhubert.model.fairseq import save_fairseq

    model, meta = load_pretrain(args.checkpoint)
    label_rate = int(args.label_rate or meta.get("label_rate") or 50)
    save_fairseq(model, args.out, label_rate=label_rate, num_updates=int(meta.get("step", 0)))
    print(f"wrote fairseq HuBERT checkpoint ({model.num_classes} classes + 4 specials, "
          f"label_rate {label_rate}) to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mhubert.model.convert import load_model, save_hf

    if args.format == "fairseq":
        return _export_fairseq(args)
    if args.format == "hf-classifier" and not args.lid:
        raise BadInput("--format hf-classifier needs --lid URI (a LID head directory)")
    model = load_model(args.checkpoint)
    n = sum(p.numel() for p in model.parameters())
    if args.format == "hf":
        save_hf(model, args.out)
        print(f"wrote transformers model ({n:,} parameters) to {args.out}")
    elif args.format in ("onnx", "onnx-int8"):
        from mhubert.model.onnx import export

        url = storage.join(args.out, "model.int8.onnx" if args.format == "onnx-int8" else "model.onnx")
        export(model, url, int8=args.format == "onnx-int8")
        print(f"wrote ONNX graph (inputs wav, lengths; outputs hidden_0..hidden_{model.cfg.num_layers}) "
              f"to {url}")
    else:
        import io

        import torch

        from mhubert.artifacts import LidHead
        from mhubert.model.hf_classifier import export_hf_classifier, head_weights_from_state

        art = LidHead(args.lid)
        state = torch.load(io.BytesIO(art.read_bytes(art.HEAD)), map_location="cpu", weights_only=True)
        head = head_weights_from_state(state["state_dict"], art.read_json(art.LABELS))
        err = export_hf_classifier(model, head, args.out)
        exact = "exact" if err < 1e-6 else f"std factorised with max relative error {err:.2g}"
        print(f"wrote HubertForSequenceClassification ({len(head.labels)} languages, {exact}) to {args.out}")
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
    e = sub.add_parser("export", help="trainer checkpoint / run / model dir -> transformers directory, "
                                      "fairseq .pt, ONNX graph or transformers audio classifier")
    e.add_argument("--checkpoint", required=True,
                   help="URL of a trainer .pt, a training run directory (fairseq), a transformers "
                        "directory or a fairseq .pt")
    e.add_argument("--out", required=True, help="output URL: a directory, or a .pt file for fairseq")
    e.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: HubertModel directory (default); fairseq: a checkpoint in the layout of "
                        "mHuBERT-147's released .pt (needs the prediction head); onnx / onnx-int8: "
                        "OUT/model[.int8].onnx with every hidden state; hf-classifier: "
                        "HubertForSequenceClassification with --lid")
    e.add_argument("--lid", help="LID head directory for --format hf-classifier")
    e.add_argument("--label-rate", type=int, default=None,
                   help="fairseq: cfg label_rate in Hz (default: the checkpoint's, else 50)")
    e.set_defaults(func=_export)
    i = sub.add_parser("import", help="fairseq HuBERT checkpoint -> transformers dir + pretrain.pt")
    i.add_argument("--fairseq", required=True, help="URL of a fairseq checkpoint .pt")
    i.add_argument("--out", required=True, help="output directory URL")
    i.set_defaults(func=_import)
