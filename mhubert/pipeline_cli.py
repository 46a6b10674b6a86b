"""``mhubert pipeline compile | run``: the Kubeflow pipeline as IR YAML, or run it here via kfp.local."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Any

from mhubert import storage
from mhubert.errors import BadInput, MhubertError

log = logging.getLogger(__name__)


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
    from pipelines.mhubert_pipeline import compile_pipeline

    out = compile_pipeline(args.out, _options(args, args.launcher))
    print(f"wrote {out}")
    return 0


def locations(root: str, iterations: tuple[int, ...]) -> dict[str, str]:
    """Where a run leaves its results under ``root``."""
    out = {"manifest": storage.join(root, "corpus", "manifest.tsv")}
    for n in iterations:
        it = storage.join(root, f"iter{n}")
        out[f"iter{n} labels"] = storage.join(it, "labels")
        out[f"iter{n} index"] = storage.join(it, "clustering")
        out[f"iter{n} model"] = storage.join(it, "train", "model")
        out[f"iter{n} metrics"] = storage.join(it, "eval")
    out["served model"] = storage.join(root, "serving", "model")
    out["registry"] = storage.join(root, "serving", "registry.json")
    return out


def run_local(corpus: str, root: str, options: Any, arguments: dict[str, Any],
              pipeline_root: str | None = None, cache: bool = True) -> str:
    """Run the pipeline in this environment with kfp.local's SubprocessRunner; returns the served
    model URL. ``arguments`` are pipeline parameters (``num_shards``, ``train_overrides``, ...)."""
    from kfp import local

    from pipelines.mhubert_pipeline import build_pipeline

    if not corpus or not root:
        raise BadInput("--corpus and --root are required")
    if pipeline_root is None:
        lp = storage.local_path(root)
        pipeline_root = os.path.join(lp, "_kfp") if lp else os.path.abspath("build/kfp-local")
    os.makedirs(pipeline_root, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root,
               raise_on_error=True, enable_caching=cache, cache_root=os.path.join(pipeline_root, "_cache"))
    pipeline = build_pipeline(options)
    # the runner warns about every non-"python" image name; ours are built for exactly this code
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    try:
        task = pipeline(corpus_uri=corpus, output_root=root, **arguments)
    except RuntimeError as e:
        raise MhubertError(f"local pipeline run failed: {e} (task logs above; artifacts under "
                           f"{pipeline_root})") from e
    return task.output


def _run(args: argparse.Namespace) -> int:
    if not args.local and not args.host:
        raise BadInput("choose --local (kfp.local on this machine) or --host URL (a Kubeflow Pipelines API)")
    launcher = "local" if args.local else args.launcher
    opt = _options(args, launcher)
    arguments: dict[str, Any] = {"num_shards": args.shards, "train_overrides": list(args.train_set),
                                 "cluster_overrides": list(args.cluster_set),
                                 "lid_probe": not args.no_lid, "preset": args.preset}
    if args.gpus_per_node is not None:
        arguments["gpus_per_node"] = args.gpus_per_node
    if args.nodes is not None:
        arguments["nodes"] = args.nodes
    for key in ("init_model", "init_index"):
        if getattr(args, key):
            arguments[key] = getattr(args, key)
    if args.shards < 1:
        raise BadInput(f"--shards must be >= 1, got {args.shards}")
    root = args.root
    if args.local:
        if storage.local_path(root) is not None:
            root = os.path.abspath(storage.local_path(root) or root)
        served = run_local(args.corpus, root, opt, arguments, args.pipeline_root, cache=not args.no_cache)
        print("\nmHuBERT pipeline finished. Results:")
        for k, v in locations(root, opt.iterations).items():
            print(f"  {k:>16}: {v}")
        reg = storage.read_json(storage.join(root, "serving", "registry.json"))
        lid = f" --lid {reg['lid']}" if reg.get("lid") else ""
        print(f"\nserve it: mhubert serve --model {served}{lid}")
        return 0
    import kfp

    from pipelines.mhubert_pipeline import build_pipeline

    client = kfp.Client(host=args.host, namespace=args.namespace)
    run = client.create_run_from_pipeline_func(build_pipeline(opt), arguments={
        "corpus_uri": args.corpus, "output_root": root, **arguments}, experiment_name=args.experiment,
        service_account=args.service_account)
    print(f"submitted run {run.run_id}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="schedule and model size: base | tiny (default base)")
    p.add_argument("--iterations", default="1,2,3",
                   help="iterations to run, contiguous within 1..3 (e.g. 1,2,3 or 3; default 1,2,3)")
    p.add_argument("--max-parallel-shards", type=int, default=16, help="ParallelFor parallelism")


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
    r.add_argument("--local", action="store_true", help="run here with kfp.local (torchrun for training)")
    r.add_argument("--host", default=None, help="Kubeflow Pipelines API URL to submit to instead")
    r.add_argument("--launcher", choices=["trainjob", "pytorchjob"], default="trainjob",
                   help="with --host: train as a TrainJob (Kubeflow Trainer v2, default) or a PyTorchJob")
    r.add_argument("--corpus", required=True, help="corpus root URL (<dataset>/<lang>/*.wav) or a TSV")
    r.add_argument("--root", required=True, help="output root URL (file path, file:// or s3://)")
    r.add_argument("--shards", type=int, default=2, help="label shards per iteration (default 2)")
    r.add_argument("--nodes", type=int, default=None, help="training nodes (TrainJob / PyTorchJob)")
    r.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node (TrainJob / PyTorchJob) / processes of the local torchrun (default 1)")
    r.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer override, e.g. train.max_update=50 (repeatable)")
    r.add_argument("--cluster-set", action="append", default=[], metavar="KEY=VALUE",
                   help="clustering override, e.g. mode=exact (repeatable)")
    r.add_argument("--init-model", default="", help="start from this model (iterations after 1)")
    r.add_argument("--init-index", default="", help="use this faiss index for the first iteration")
    r.add_argument("--no-lid", action="store_true", help="skip the LID probe")
    r.add_argument("--no-cache", action="store_true", help="disable kfp.local's task cache")
    r.add_argument("--pipeline-root", default=None, help="kfp.local artifact directory "
                   "(default <root>/_kfp for local roots, else build/kfp-local)")
    r.add_argument("--namespace", default=None, help="KFP namespace (with --host)")
    r.add_argument("--experiment", default="mhubert", help="KFP experiment (with --host)")
    r.add_argument("--service-account", default="mhubert-pipeline",
                   help="run's service account (with --host)")
    _common(r)
    r.set_defaults(func=_run, preset="tiny")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


if __name__ == "__main__":  # pragma: no cover
    from mhubert.cli import main

    sys.exit(main(["pipeline", *sys.argv[1:]]))
