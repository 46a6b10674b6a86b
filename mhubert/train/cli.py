"""``mhubert train run`` (= ``python -m mhubert.train``) and ``mhubert train render-job``.

Light at import (``--help`` loads no torch): the trainer is imported when a run starts.
"""

from __future__ import annotations

import argparse
import json
import os

METRICS_PORT_ENV = "MHUBERT_METRICS_PORT"


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="base | tiny | a YAML file/URL (default: base)")
    p.add_argument("--manifest", required=True, help="manifest URL (mhubert corpus manifest)")
    p.add_argument("--labels", required=True, help="labels directory URL (a committed labels artifact)")
    p.add_argument("--out", required=True, help="run directory URL (checkpoints, log, model)")
    p.add_argument("--init-from", "--init-model", dest="init_from", default=None,
                   help="start the encoder from a transformers directory, a trainer checkpoint or "
                        "a fairseq HuBERT .pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. train.lr=1e-4 or data.max_tokens=1400000")
    p.add_argument("--num-classes", type=int, default=None,
                   help="label vocabulary size (default: num_clusters in the labels' marker)")
    p.add_argument("--on-change", choices=("stop", "resume", "force"), default="stop",
                   help="when --out holds a run with other settings or inputs: stop (default), "
                        "resume (continue its checkpoints with the new settings) or force (start "
                        "again)")
    p.add_argument("--resume", dest="on_change", action="store_const", const="resume",
                   help="= --on-change resume")
    p.add_argument("--force", dest="on_change", action="store_const", const="force",
                   help="= --on-change force")
    p.add_argument("--callback", dest="callbacks", action="append", default=[], metavar="MOD:CLASS",
                   help="add a training callback (a mhubert.train.callbacks.Callback subclass); "
                        "also read from MHUBERT_TRAIN_CALLBACKS (comma-separated)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help=f"serve Prometheus metrics on this port + LOCAL_RANK (0: off; default "
                        f"${METRICS_PORT_ENV} or 0)")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                   help="do not write TensorBoard scalars under <out>/tensorboard")


def _run(args: argparse.Namespace) -> int:
    from mhubert.errors import BadInput
    from mhubert.train.callbacks import CALLBACKS_ENV, callback_specs, load_callback
    from mhubert.train.preempt import EXIT_CODE
    from mhubert.train.run import RunArgs, train
    from mhubert.train.telemetry import telemetry_callbacks

    port = args.metrics_port
    if port is None:
        raw = os.environ.get(METRICS_PORT_ENV, "0") or "0"
        try:
            port = int(raw)
        except ValueError:
            raise BadInput(f"{METRICS_PORT_ENV}={raw!r} is not a port number") from None
    if not 0 <= port < 65536:
        raise BadInput(f"--metrics-port must be in 0..65535, got {port}")
    callbacks = [load_callback(s) for s in callback_specs(args.callbacks, os.environ.get(CALLBACKS_ENV))]
    callbacks += telemetry_callbacks(metrics_port=port, tensorboard=args.tensorboard)
    result = train(RunArgs(manifest=args.manifest, labels=args.labels, out=args.out,
                           preset=args.preset, init_from=args.init_from,
                           overrides=list(args.overrides), num_classes=args.num_classes,
                           on_change=args.on_change), callbacks=callbacks)
    print(json.dumps({k: result.get(k) for k in ("step", "final_loss", "skipped", "preempted")}))
    return EXIT_CODE if result.get("preempted") else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="pretrain a HuBERT model (torchrun / PyTorchJob ready)")
    sub = train.add_subparsers(dest="train_command", metavar="ACTION")
    p = sub.add_parser("run", help="train, resuming from the latest checkpoint in --out")
    add_run_args(p)
    p.set_defaults(func=_run)
    # `train render-job` is added by the console command (mhubert.cli), which may import both stages
