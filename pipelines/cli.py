"""``mhubert pipeline compile | run``: the Kubeflow pipeline as IR YAML, or run it here via kfp.local.

Registered on the console command through the ``mhubert.commands`` entry point (the library never
imports this shell). ``run`` checks everything it can before the first stage starts (preset, every
``--set`` key and value against the config dataclasses, iterations against ``--init-model``, the
corpus layout, shard counts, referenced URLs: :mod:`pipelines.preflight`), then runs quietly: one
line per task, the full kfp log in a file whose path is printed (``-v`` shows everything).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mhubert.corpus.cli import FORMATS as CORPUS_FORMATS  # the names only: no reader is imported
from mhubert.errors import BadInput

ON_CHANGE_HELP = ("a committed stage result made with other settings: stop with the difference (default), "
                  "--resume it from its last checkpoint with the new settings (training), or --force "
                  "recompute it and what depends on it")


def parse_iterations(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` / ``"3"`` / ``"2-3"`` -> ``(1, 2, 3)`` / ``(3,)`` / ``(2, 3)``."""
    try:
        if "-" in text:
            a, b = (int(x) for x in text.split("-", 1))
            return tuple(range(a, b + 1))
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise BadInput(f"--iterations {text!r}: expected e.g. 1,2,3 or 3 or 2-3") from e


def _options(args: argparse.Namespace, launcher: str) -> Any:
    from pipelines.mhubert_pipeline import PipelineOptions

    opt = PipelineOptions(iterations=parse_iterations(args.iterations), launcher=launcher,
                          preset=args.preset, max_parallel_shards=args.max_parallel_shards)
    opt.validate()
    return opt


def _compile(args: argparse.Namespace) -> int:
    from mhubert.config import load_preset
    from pipelines.mhubert_pipeline import compile_pipeline

    load_preset(args.preset)
    out = compile_pipeline(args.out, _options(args, args.launcher))
    print(f"wrote {out}")
    return 0


def on_change(args: argparse.Namespace) -> str:
    if args.resume and args.force:
        raise BadInput("--resume and --force exclude each other")
    return "resume" if args.resume else "force" if args.force else "stop"


def _run(args: argparse.Namespace) -> int:
    from pipelines import preflight

    if not args.local and not args.host:
        raise BadInput("choose --local (kfp.local on this machine) or --host URL (a Kubeflow Pipelines API)")
    launcher = "local" if args.local else args.launcher
    opt = _options(args, launcher)
    plan = preflight.check(args, opt)  # every check that can fail, before any stage starts
    _preview(args, plan, opt)
    if args.dry_run:
        sets = " ".join(plan.train_overrides + plan.cluster_overrides + plan.lid_overrides
                        + [f"superb.{o}" for o in plan.superb_overrides]) or "none"
        corpus = plan.corpus or f"{plan.corpus_format} {' '.join(plan.sources)}"
        print(f"checked: preset {args.preset}, iterations {','.join(map(str, opt.iterations))}, corpus "
              f"{corpus}, overrides {sets}; nothing was run (--dry-run)")
        return 0
    arguments: dict[str, Any] = {"num_shards": args.shards, "train_overrides": plan.train_overrides,
                                 "cluster_overrides": plan.cluster_overrides,
                                 "lid_overrides": plan.lid_overrides,
                                 "superb_overrides": plan.superb_overrides,
                                 "lid_probe": not args.no_lid,
                                 "preset": args.preset, "on_change": on_change(args)}
    if plan.sources:
        arguments.update(corpus_format=plan.corpus_format, corpus_sources=plan.sources)
    if args.gpus_per_node is not None:
        arguments["gpus_per_node"] = args.gpus_per_node
    if args.nodes is not None:
        arguments["nodes"] = args.nodes
    for key in ("init_model", "init_index"):
        if getattr(args, key):
            arguments[key] = getattr(args, key)
    if args.local:
        from pipelines.local import run_local

        served = run_local(plan.corpus, plan.root, opt, arguments, args.pipeline_root, verbose=args.verbose)
        from mhubert.artifacts import RunLayout

        run = RunLayout(plan.root)
        print("\nmHuBERT pipeline finished. Results:")
        for k, v in run.locations(opt.iterations).items():
            print(f"  {k:>16}: {v}")
        reg = run.serving.registry()
        lid = f" --lid {reg['lid']}" if reg.get("lid") else ""
        print(f"\nserve it: mhubert serve --model {served}{lid}")
        return 0
    import kfp

    from pipelines.mhubert_pipeline import build_pipeline

    client = kfp.Client(host=args.host, namespace=args.namespace)
    run = client.create_run_from_pipeline_func(build_pipeline(opt), arguments={
        "corpus_uri": plan.corpus, "output_root": plan.root, **arguments}, experiment_name=args.experiment,
        service_account=args.service_account, enable_caching=False)
    print(f"submitted run {run.run_id}")
    return 0


def _preview(args: argparse.Namespace, plan: Any, opt: Any) -> None:
    """The cost preview first (:mod:`pipelines.preview`: a manifest's rows, or a folder's or
    sources' durations read before the import), and a large preset on a machine without a GPU only
    with --yes."""
    from pipelines.preview import device_kind, preview

    overrides = [*plan.train_overrides, *(f"clustering.{kv}" for kv in plan.cluster_overrides)]
    print(preview(plan.corpus, plan.corpus_format, plan.sources, args.dataset, args.preset, args.nodes or 1,
                  args.gpus_per_node or 1, device_kind() if args.local else None, overrides,
                  tuple(opt.iterations)), flush=True)
    if args.local and args.preset == "base" and not args.yes:
        import torch

        if not torch.cuda.is_available():
            raise BadInput("--preset base on a machine without a GPU takes weeks per iteration: pass --yes "
                           "to run it anyway, or use --preset tiny (see `mhubert plan`)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="schedule and model size: base | tiny (default base)")
    p.add_argument("--iterations", default="1,2,3",
                   help="iterations to run, contiguous within 1..3 (e.g. 1,2,3 or 3; default 1,2,3)")
    p.add_argument("--max-parallel-shards", type=int, default=16, help="ParallelFor parallelism")


def add_run_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--local", action="store_true", help="run here with kfp.local (torchrun for training)")
    r.add_argument("--host", default=None, help="Kubeflow Pipelines API URL to submit to instead")
    r.add_argument("--launcher", choices=["trainjob", "pytorchjob"], default="trainjob",
                   help="with --host: train as a TrainJob (Kubeflow Trainer v2, default) or a PyTorchJob")
    r.add_argument("--corpus", default=None,
                   help="corpus root URL laid out <dataset>/<lang>/<file> (folder names become the "
                        "language and dataset labels), or a manifest TSV (or use --format/--src)")
    r.add_argument("--format", default=None, choices=CORPUS_FORMATS,
                   help="with --src: the sources' layout as released (as `mhubert corpus import --format`)")
    r.add_argument("--src", action="append", default=[], metavar="URL",
                   help="a source of --format (repeat for several; they are joined into one corpus)")
    r.add_argument("--dataset", default=None, metavar="NAME",
                   help="the corpus root is one dataset laid out <lang>/<file>: call it NAME")
    r.add_argument("--root", required=True, help="output root URL (file path, file:// or s3://)")
    r.add_argument("--shards", type=int, default=2, help="label shards per iteration (default 2)")
    r.add_argument("--nodes", type=int, default=None, help="training nodes (TrainJob / PyTorchJob)")
    r.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node (TrainJob / PyTorchJob) / processes of the local torchrun (default 1)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value of any stage, e.g. train.max_update=50, "
                        "clustering.mode=exact, lid.epochs=100, superb.max_steps=500 (repeatable)")
    r.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="same as --set for the training sections (model, data, train)")
    r.add_argument("--cluster-set", action="append", default=[], metavar="KEY=VALUE",
                   help="same as --set for the clustering section")
    r.add_argument("--resume", action="store_true", help=ON_CHANGE_HELP)
    r.add_argument("--force", action="store_true", help="see --resume")
    r.add_argument("--init-model", default="", help="start from this model (iterations after 1)")
    r.add_argument("--init-index", default="", help="use this faiss index for the first iteration")
    r.add_argument("--no-lid", action="store_true", help="skip the LID probe")
    r.add_argument("--pipeline-root", default=None, help="kfp.local artifact directory "
                   "(default <root>/_kfp for local roots, else build/kfp-local)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="show kfp's full output, not one line per task")
    r.add_argument("--dry-run", action="store_true", help="check everything (seconds), run nothing")
    r.add_argument("--yes", action="store_true", help="run a large preset on a machine without a GPU anyway")
    r.add_argument("--namespace", default=None, help="KFP namespace (with --host)")
    r.add_argument("--experiment", default="mhubert", help="KFP experiment (with --host)")
    r.add_argument("--service-account", default="mhubert-pipeline",
                   help="run's service account (with --host)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pipeline", help="the Kubeflow pipeline: compile to IR YAML, or run it")
    sub = p.add_subparsers(dest="pipeline_command", metavar="ACTION")
    c = sub.add_parser("compile", help="write the pipeline's IR YAML")
    c.add_argument("--out", required=True, help="output YAML path")
    c.add_argument("--launcher", choices=["trainjob", "pytorchjob", "local"], default="trainjob",
                   help="how the train step runs: trainjob (Kubeflow Trainer v2, default), pytorchjob "
                        "(v1 Training Operator) or local (torchrun under kfp.local)")
    _common(c)
    c.set_defaults(func=_compile)
    r = sub.add_parser("run", help="run the pipeline (--local: kfp.local + torchrun on this machine)")
    add_run_args(r)
    _common(r)
    r.set_defaults(func=_run, preset="tiny")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def main(argv: list[str] | None = None) -> int:  # pragma: no cover (python -m pipelines.cli)
    from mhubert.cli import main as cli_main

    return cli_main(["pipeline", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

