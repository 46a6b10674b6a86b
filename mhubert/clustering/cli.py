"""``mhubert cluster sample | fit | assign | merge | report``.

A clustering directory (``--out`` of sample and fit) holds the sample (``sample/``, a
ClusteringSample) and the index (``index.faiss``, ``centroids.npy``: an Index); labels go to their
own directory (Labels), the quality report to the iteration's evaluation directory (EvalReport).
Each stage reuses a result committed with the same settings and inputs, stops before any work when
the committed one was made otherwise, and recomputes it with ``--force``. ``sample`` and ``assign``
stop at a part/shard boundary on SIGTERM (exit code 143) with nothing partial written.
"""

from __future__ import annotations

import argparse
import json
import sys

from mhubert import storage
from mhubert.artifacts import Index
from mhubert.clustering import ClusteringConfig
from mhubert.clustering.stop import Preempted, stop_on_sigterm
from mhubert.config import apply_overrides, from_preset, route_overrides
from mhubert.errors import BadInput
from mhubert.features.spec import FeatureSpec

SIGTERM_EXIT = 143   # 128 + SIGTERM, what a shell reports for a process ended by it


def stage_config(preset: str, options: dict | None = None, sets: list[str] | None = None
                 ) -> ClusteringConfig:
    """The config a ``cluster`` command builds: the preset's ``clustering`` section, then its flags'
    ``options`` (``{"num_clusters": K, ...}``), then ``--set`` items (a pipeline's preflight builds
    the same to compare a committed result's settings)."""
    cfg = from_preset(ClusteringConfig, "clustering", preset, dict(options or {}))
    routed = route_overrides(sets, {"clustering": ClusteringConfig})
    return apply_overrides(cfg, routed["clustering"])


def _config(args: argparse.Namespace) -> ClusteringConfig:
    overrides: dict = {}
    for flag, key in (("num_clusters", "num_clusters"), ("index_factory", "index_factory"),
                      ("budget_gb", "memory_budget_gb"), ("mode", "mode"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            overrides[key] = v
    if getattr(args, "exact", False):
        overrides["label_method"] = "exact"
    return stage_config(args.preset, overrides, getattr(args, "set", None))


def _spec(args: argparse.Namespace) -> FeatureSpec:
    norm = {"auto": None, "true": True, "false": False}[args.normalize]
    return FeatureSpec(source=args.features, model=args.model, layer=args.layer, normalize=norm,
                       batch_size=args.batch_size, device=args.device)


def _on_change(args: argparse.Namespace) -> str:
    return "force" if getattr(args, "force", False) else "stop"


def _stoppable(run, what: str) -> int:
    with stop_on_sigterm() as stop:
        try:
            info = run(stop)
        except Preempted as e:
            print(f"mhubert cluster {what}: {e}", file=sys.stderr)
            return SIGTERM_EXIT
    print(json.dumps(info))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from mhubert.clustering.sample import build_sample

    spec, cfg = _spec(args), _config(args)

    def run(stop):
        info = build_sample(args.manifest, storage.join(args.out, "sample"), spec, cfg,
                            progress=not args.quiet, on_change=_on_change(args), stop=stop)
        return {k: v for k, v in info.items() if k not in ("parts", "rows")}

    return _stoppable(run, "sample")


def _fit(args: argparse.Namespace) -> int:
    from mhubert.clustering.fit import fit

    print(json.dumps(fit(storage.join(args.out, "sample"), args.out, _config(args),
                         on_change=_on_change(args))))
    return 0


def _assign(args: argparse.Namespace) -> int:
    from mhubert.clustering.assign import assign_shard

    index = args.index or (Index(args.out).index_url if args.out else None)
    if not index:
        raise BadInput("give --index (a faiss index URL) or --out (a clustering directory)")
    spec, cfg = _spec(args), _config(args)

    def run(stop):
        return assign_shard(args.manifest, args.labels, index, spec, args.shard, args.num_shards,
                            cfg=cfg, progress=not args.quiet, on_change=_on_change(args), stop=stop)

    return _stoppable(run, "assign")


def _merge(args: argparse.Namespace) -> int:
    from mhubert.clustering.assign import merge

    print(json.dumps(merge(args.labels, args.num_shards, on_change=_on_change(args),
                           progress=not args.quiet)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from mhubert.clustering.quality import report

    clustering = args.clustering or storage.join(storage.parent(args.out), "clustering")
    index = args.index or Index(clustering).index_url
    q = report(args.out, index, storage.join(clustering, "sample"), args.manifest,
               max_rows=args.max_rows, reference_labels=args.reference_labels, labels=args.labels,
               label_method=_config(args).label_method)
    print(json.dumps(q))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="base | tiny | a YAML URL (default base)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a clustering option, e.g. clustering.label_method=exact (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"recompute {what} even when one made with other settings is committed")


def _features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest URL")
    p.add_argument("--features", choices=("mfcc", "hubert"), default="mfcc",
                   help="mfcc (39-d, 10 ms hop) or hubert (layer L of --model, at its conv stride)")
    p.add_argument("--model", help="model URL for --features hubert (transformers dir or .pt)")
    p.add_argument("--layer", type=int, default=0, help="layer for --features hubert")
    p.add_argument("--normalize", choices=("auto", "true", "false"), default="auto",
                   help="waveform layer-norm (auto: off for mfcc, on for hubert)")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per feature batch")
    p.add_argument("--device", help="torch device for the features (default: cuda when available)")


def _index_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-clusters", type=int, help="K (default from the preset)")
    p.add_argument("--index-factory", help="faiss factory string; IVF{K} is filled in")
    p.add_argument("--mode", choices=("factory", "exact"), help="factory index or exact k-means")
    p.add_argument("--seed", type=int)


def register(subparsers: argparse._SubParsersAction) -> None:
    cluster = subparsers.add_parser("cluster", help="clustering sample, k-means index, labels")
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")

    p = sub.add_parser("sample", help="budgeted α/β clustering sample of features -> OUT/sample/")
    _features(p)
    p.add_argument("--out", required=True, help="clustering directory URL")
    p.add_argument("--budget-gb", type=float, help="sample size in GB of float32 features")
    _index_opts(p)
    _force(p, "the sample")
    _common(p)
    p.set_defaults(func=_sample)

    p = sub.add_parser("fit", help="train the faiss index on OUT/sample/ -> OUT/index.faiss")
    p.add_argument("--out", required=True, help="clustering directory URL")
    _force(p, "the index")
    _index_opts(p)
    _common(p)
    p.set_defaults(func=_fit)

    p = sub.add_parser("assign", help="label one shard of the manifest")
    _features(p)
    p.add_argument("--labels", required=True, help="labels directory URL")
    p.add_argument("--index", help="faiss index URL (default OUT/index.faiss)")
    p.add_argument("--out", help="clustering directory URL")
    p.add_argument("--shard", type=int, default=0, help="this shard (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards (default 1)")
    p.add_argument("--exact", action="store_true",
                   help="shorthand for --set clustering.label_method=exact (exact nearest coarse "
                        "centroid after OPQ instead of the HNSW top-1)")
    _force(p, "this shard")
    _common(p)
    p.set_defaults(func=_assign)

    p = sub.add_parser("merge", help="merge finished shards into labels.npy/offsets.npy/labels.km")
    p.add_argument("--labels", required=True, help="labels directory URL")
    p.add_argument("--num-shards", type=int, required=True, help="number of shards")
    _force(p, "the merged labels")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_merge)

    p = sub.add_parser("report", help="cluster sizes, exact agreement, PNMI/purity vs language "
                                      "-> the iteration's evaluation directory")
    p.add_argument("--out", required=True,
                   help="the iteration's evaluation directory URL (RUN/iter<N>/eval)")
    p.add_argument("--clustering", help="clustering directory URL (sample, index; default: the "
                                        "iteration's, beside --out: OUT/../clustering)")
    p.add_argument("--manifest", required=True, help="manifest URL the sample was built from")
    p.add_argument("--index", help="faiss index URL (default CLUSTERING/index.faiss)")
    p.add_argument("--max-rows", type=int, default=200_000, help="sample rows to score")
    p.add_argument("--reference-labels", help="merged labels dir of reference (e.g. phone) labels")
    p.add_argument("--labels", help="this iteration's merged labels dir: adds unit-LID accuracy")
    p.add_argument("--preset", default="base")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="clustering option, e.g. clustering.label_method=exact")
    p.set_defaults(func=_report)
