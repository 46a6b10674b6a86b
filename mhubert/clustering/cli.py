"""``mhubert cluster sample | fit | assign | merge | report``.

A clustering directory (``--out``) holds ``sample/``, ``index.faiss``, ``centroids.npy``,
``index.json``, ``cluster_sizes.{json,png}`` and ``quality.json``; labels go to their own directory.
"""

from __future__ import annotations

import argparse
import json

from mhubert import storage
from mhubert.clustering import ClusteringConfig
from mhubert.config import from_preset
from mhubert.errors import BadInput


def _config(args: argparse.Namespace) -> ClusteringConfig:
    overrides: dict = {}
    for flag, key in (("num_clusters", "num_clusters"), ("index_factory", "index_factory"),
                      ("budget_gb", "memory_budget_gb"), ("mode", "mode"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            overrides[key] = v
    cfg = from_preset(ClusteringConfig, "clustering", args.preset, overrides)
    if getattr(args, "set", None):
        from mhubert.config import apply_overrides

        cfg = apply_overrides(cfg, args.set)
    return cfg


def _spec(args: argparse.Namespace):  # -> FeatureSpec (imports torch: not at module level)
    from mhubert.clustering.features import FeatureSpec

    norm = {"auto": None, "true": True, "false": False}[args.normalize]
    return FeatureSpec(source=args.features, model=args.model, layer=args.layer, normalize=norm,
                       batch_size=args.batch_size, device=args.device)


def _sample(args: argparse.Namespace) -> int:
    from mhubert.clustering.sample import build_sample

    info = build_sample(args.manifest, storage.join(args.out, "sample"), _spec(args), _config(args),
                        progress=not args.quiet)
    print(json.dumps({k: v for k, v in info.items() if k not in ("parts", "rows")}))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from mhubert.clustering.index import fit

    print(json.dumps(fit(storage.join(args.out, "sample"), args.out, _config(args), force=args.force)))
    return 0


def _assign(args: argparse.Namespace) -> int:
    from mhubert.clustering.assign import assign_shard

    index = args.index or (storage.join(args.out, "index.faiss") if args.out else None)
    if not index:
        raise BadInput("give --index (a faiss index URL) or --out (a clustering directory)")
    info = assign_shard(args.manifest, args.labels, index, _spec(args), args.shard, args.num_shards,
                        exact=args.exact, progress=not args.quiet)
    print(json.dumps(info))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from mhubert.clustering.assign import merge

    print(json.dumps(merge(args.labels, args.num_shards)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from mhubert.clustering.quality import report

    index = args.index or storage.join(args.out, "index.faiss")
    q = report(args.out, index, storage.join(args.out, "sample"), args.manifest,
               max_rows=args.max_rows, reference_labels=args.reference_labels, labels=args.labels)
    print(json.dumps(q))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", help="base | tiny | a YAML URL (default base)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a clustering option (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest URL")
    p.add_argument("--features", choices=("mfcc", "hubert"), default="mfcc",
                   help="mfcc (39-d, 100 Hz) or hubert (layer L of --model, 50 Hz)")
    p.add_argument("--model", help="model URL for --features hubert (transformers dir or .pt)")
    p.add_argument("--layer", type=int, default=0, help="layer for --features hubert")
    p.add_argument("--normalize", choices=("auto", "true", "false"), default="auto",
                   help="waveform layer-norm (auto: off for mfcc, on for hubert)")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per feature batch")
    p.add_argument("--device", help="torch device (default: cuda when available)")


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
    _common(p)
    p.set_defaults(func=_sample)

    p = sub.add_parser("fit", help="train the faiss index on OUT/sample/ -> OUT/index.faiss")
    p.add_argument("--out", required=True, help="clustering directory URL")
    p.add_argument("--force", action="store_true", help="retrain even if OUT/index.json exists")
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
                   help="exact nearest coarse centroid instead of the HNSW top-1")
    _common(p)
    p.set_defaults(func=_assign)

    p = sub.add_parser("merge", help="merge finished shards into labels.npy/offsets.npy/labels.km")
    p.add_argument("--labels", required=True, help="labels directory URL")
    p.add_argument("--num-shards", type=int, required=True, help="number of shards")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_merge)

    p = sub.add_parser("report", help="cluster sizes, exact agreement, PNMI/purity vs language")
    p.add_argument("--out", required=True, help="clustering directory URL")
    p.add_argument("--manifest", required=True, help="manifest URL the sample was built from")
    p.add_argument("--index", help="faiss index URL (default OUT/index.faiss)")
    p.add_argument("--max-rows", type=int, default=200_000, help="sample rows to score")
    p.add_argument("--reference-labels", help="merged labels dir of reference (e.g. phone) labels")
    p.add_argument("--labels", help="this iteration's merged labels dir: adds unit-LID accuracy")
    p.add_argument("--preset", default="base")
    p.set_defaults(func=_report)
