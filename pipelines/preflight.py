"""Everything ``mhubert pipeline run`` can check before the first stage starts, in seconds.

A mistake found here is one line naming the problem and what to do (exit code 2), instead of a
traceback minutes later inside a kfp task or torchrun: the preset (listing the valid ones), every
``--set`` key and value type against the config dataclasses of the stage it goes to (and each
iteration's preset overrides with them, so ``train.max_update=-5`` fails here), iterations against
``--init-model``, referenced URLs, shard counts, and the corpus layout, including the common
one-level-shallow ``<root>/<lang>/<file>`` layout (named as such; ``--dataset NAME`` accepts it),
and the no-stale-results rule: a stage whose committed result under ``--root`` was made with other
settings stops the run here, naming them (:mod:`pipelines.stale`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from mhubert import storage
from mhubert.artifacts import Manifest, ManifestEntry, RunLayout
from mhubert.config import iteration_train_overrides, load_preset, load_sections, route_overrides
from mhubert.errors import BadInput

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
TRAIN_SECTIONS = ("model", "data", "train")


@dataclass
class Plan:
    """What the run will be given once every check passed."""

    corpus: str
    root: str
    train_overrides: list[str] = field(default_factory=list)    # section.key=value
    cluster_overrides: list[str] = field(default_factory=list)  # key=value (clustering section)
    lid_overrides: list[str] = field(default_factory=list)      # key=value (lid section)
    superb_overrides: list[str] = field(default_factory=list)   # key=value (superb section: probes)
    corpus_format: str = ""                                     # with sources: --format
    sources: list[str] = field(default_factory=list)            # --src (corpus is "" then)


def sections() -> dict[str, type]:
    """Every config section a pipeline run's ``--set`` can reach, by name."""
    from mhubert.clustering import ClusteringConfig
    from mhubert.data.dataset import DataConfig
    from mhubert.eval.config import SuperbConfig
    from mhubert.lid.train import LidTrainConfig
    from mhubert.model.config import HubertConfig
    from mhubert.train.config import TrainConfig

    return {"model": HubertConfig, "data": DataConfig, "train": TrainConfig,
            "clustering": ClusteringConfig, "lid": LidTrainConfig, "superb": SuperbConfig}


def _prefixed(items: list[str], allowed: dict[str, type], flag: str) -> list[str]:
    """``--train-set`` / ``--cluster-set`` items as ``section.key=value`` within their sections."""
    routed = route_overrides(items, allowed)  # raises naming the flag's sections
    return [f"{s}.{kv}" for s, kvs in routed.items() for kv in kvs]


def route(args: argparse.Namespace) -> dict[str, list[str]]:
    """``{section: ["key=value", ...]}`` from ``--set``, ``--train-set`` and ``--cluster-set``."""
    secs = sections()
    items = list(args.overrides)
    try:
        items += _prefixed(list(args.train_set), {s: secs[s] for s in TRAIN_SECTIONS}, "--train-set")
        items += _prefixed(list(args.cluster_set), {"clustering": secs["clustering"]}, "--cluster-set")
    except BadInput as e:
        raise BadInput(str(e).replace("--set", "--train-set/--cluster-set", 1)) from None
    return route_overrides(items, secs)


def validate_configs(preset: str, routed: dict[str, list[str]], iterations: tuple[int, ...]) -> None:
    """Build every section for every iteration, as the stages will (types, ranges, __post_init__)."""
    secs = sections()
    train_items = [f"{s}.{kv}" for s in TRAIN_SECTIONS for kv in routed[s]]
    for n in iterations:
        items = iteration_train_overrides(preset, n, train_items)
        cfgs = load_sections(preset, {s: secs[s] for s in TRAIN_SECTIONS}, items)
        validate = getattr(cfgs["train"], "validate", None)
        if callable(validate):
            validate()
    load_sections(preset, {"clustering": secs["clustering"]},
                  [f"clustering.{kv}" for kv in routed["clustering"]])
    load_sections(preset, {"lid": secs["lid"]}, [f"lid.{kv}" for kv in routed["lid"]])
    load_sections(preset, {"superb": secs["superb"]}, [f"superb.{kv}" for kv in routed["superb"]])


def _audio(rel: str) -> bool:
    return rel.lower().endswith(AUDIO_EXTENSIONS)


def check_corpus(corpus: str, dataset: str | None, root: str) -> str:
    """The corpus URL the run scans: ``corpus`` itself, or (``--dataset``) a TSV written under the
    run root that lists the ``<lang>/<file>`` files as one dataset."""
    if corpus.endswith((".tsv", ".txt")):
        if not storage.exists(corpus):
            raise BadInput(f"--corpus {corpus}: no such manifest")
        if dataset:
            raise BadInput("--dataset names the dataset of a <lang>/<file> folder, not of a TSV")
        return corpus
    fs, base = storage.get_fs(corpus)
    if fs.isfile(base):
        raise BadInput(f"--corpus {corpus}: a file, not a manifest TSV (.tsv/.txt) nor a folder laid out "
                       "<dataset>/<lang>/<file>; give the folder that holds your audio")
    if not fs.isdir(base):
        raise BadInput(f"--corpus {corpus}: not found or not a directory")
    base = base.rstrip("/")
    depth: dict[int, list[str]] = {}
    for p in fs.find(base):
        rel = p[len(base):].lstrip("/")
        parts = rel.split("/")
        if rel and not any(x.startswith(".") for x in parts) and _audio(rel):
            depth.setdefault(len(parts), []).append(rel)
    deep, shallow = depth.get(3, []), depth.get(2, [])
    if dataset:
        if deep and not shallow:
            raise BadInput(f"--dataset {dataset}: {corpus} is already laid out <dataset>/<lang>/<file> "
                           f"({len(deep)} files); drop --dataset")
        if not shallow:
            raise BadInput(f"--corpus {corpus}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in "
                           "<lang>/<file> folders")
        entries = [ManifestEntry(rel, 1, rel.split("/")[0], dataset) for rel in sorted(shallow)]
        url = storage.join(root, "_input", f"{dataset}.tsv")
        storage.atomic_write(url, Manifest(corpus, entries).to_text().encode())
        return url
    if not deep:
        if shallow:
            langs = sorted({r.split("/")[0] for r in shallow})
            raise BadInput(f"--corpus {corpus}: {len(shallow)} audio files in <lang>/<file> folders "
                           f"({', '.join(langs[:5])}{', ...' if len(langs) > 5 else ''}), one level too "
                           "shallow for <dataset>/<lang>/<file>: pass --dataset NAME to use them as one "
                           f"dataset, or move them under {corpus.rstrip('/')}/NAME/")
        found = sum(len(v) for v in depth.values())
        raise BadInput(f"--corpus {corpus}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) laid out "
                       f"<dataset>/<lang>/<file>" + (f" ({found} elsewhere)" if found else ""))
    return corpus


def check_sources(args: argparse.Namespace) -> list[str]:
    """``--format``/``--src`` (the ``mhubert corpus import`` options) or ``--corpus``, not both;
    every source exists. Returns the sources (local paths absolute), [] with ``--corpus``."""
    src = list(getattr(args, "src", None) or [])
    if bool(src) == bool(args.corpus):
        raise BadInput("give the corpus as --corpus URL, or as --format FORMAT with --src URL (repeatable)")
    if not src:
        if getattr(args, "format", None):
            raise BadInput("--format goes with --src (--corpus is a <dataset>/<lang>/<file> tree or a TSV)")
        return []
    if not args.format:
        raise BadInput("--src needs --format (e.g. --format commonvoice; see `mhubert corpus import --help`)")
    if args.dataset:
        raise BadInput("--dataset names the dataset of a --corpus <lang>/<file> folder; with --src the "
                       "format names it")
    out = []
    for url in src:
        lp = storage.local_path(url)
        url = os.path.abspath(lp) if lp is not None else url
        if not storage.exists(url):
            raise BadInput(f"--src {url}: not found")
        out.append(url)
    return out


def check(args: argparse.Namespace, options: Any) -> Plan:
    """Every check of a pipeline run; returns what to run it with."""
    load_preset(args.preset)
    if args.shards < 1:
        raise BadInput(f"--shards must be >= 1, got {args.shards}")
    for flag in ("nodes", "gpus_per_node"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise BadInput(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.resume and args.force:
        raise BadInput("--resume and --force exclude each other")
    first = options.iterations[0]
    if first > 1 and not args.init_model:
        raise BadInput(f"--iterations {args.iterations} starts at iteration {first}: pass --init-model URL "
                       f"(the model iteration {first - 1} trained, e.g. a published mHuBERT-147 one)")
    for flag in ("init_model", "init_index"):
        url = getattr(args, flag)
        if url and not storage.exists(url):
            raise BadInput(f"--{flag.replace('_', '-')} {url}: not found")
    routed = route(args)
    validate_configs(args.preset, routed, tuple(options.iterations))
    root = args.root
    lp = storage.local_path(root)
    if lp is not None:
        root = os.path.abspath(lp)
    RunLayout(root)
    sources, corpus = check_sources(args), ""
    if not sources:
        corpus = args.corpus
        if storage.local_path(corpus) is not None:
            corpus = os.path.abspath(storage.local_path(corpus) or corpus)
        corpus = check_corpus(corpus, args.dataset, root)
    plan = Plan(corpus=corpus, root=root, corpus_format=args.format if sources else "", sources=sources,
                train_overrides=[f"{s}.{kv}" for s in TRAIN_SECTIONS for kv in routed[s]],
                cluster_overrides=list(routed["clustering"]), lid_overrides=list(routed["lid"]),
                superb_overrides=list(routed["superb"]))
    from pipelines import stale  # the stages' settings functions (torch): only once the rest passed

    stale.check(root, corpus, args.preset, tuple(options.iterations),
                "resume" if args.resume else "force" if args.force else "stop", args.shards,
                plan.train_overrides, plan.cluster_overrides, plan.lid_overrides,
                lid_probe=not args.no_lid, init_model=args.init_model, init_index=args.init_index,
                corpus_format=plan.corpus_format, sources=plan.sources)
    return plan

