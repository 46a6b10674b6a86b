"""``mhubert corpus synth | import | merge | manifest``."""

from __future__ import annotations

import argparse
import json
import os


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _on_change(args: argparse.Namespace) -> str:
    return "force" if getattr(args, "force", False) else "stop"


def _summary(res, out: str) -> int:
    m = res.manifest
    print(json.dumps({"manifest": out.rstrip("/") + "/manifest.tsv", "utterances": len(m),
                      "rejected": len(res.rejects), "languages": m.languages,
                      "datasets": m.datasets, "hours": round(res.stats["total"]["hours"], 4),
                      "decision": res.decision}))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from mhubert.corpus.synth import synthesize

    items = synthesize(args.out, languages=args.languages, utterances=args.utterances,
                       seed=args.seed, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                       workers=args.workers)
    print(json.dumps({"root": args.out, "utterances": len(items),
                      "languages": sorted({u.lang for u in items}),
                      "datasets": sorted({u.dataset for u in items})}))
    return 0


def _import(args: argparse.Namespace) -> int:
    from mhubert.corpus.importer import import_corpus

    res = import_corpus(args.format, args.src, args.out, dataset=args.dataset,
                        languages=_csv(args.languages), splits=_csv(args.splits),
                        min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                        workers=args.workers, trust_metadata=args.trust_metadata,
                        on_change=_on_change(args), progress=not args.quiet)
    return _summary(res, args.out)


def _merge(args: argparse.Namespace) -> int:
    from mhubert.corpus.merge import merge_corpora
    from mhubert.corpus.report import ALPHA, BETA

    res = merge_corpora(args.inputs, args.out, same_names=args.same_names,
                        alpha=ALPHA if args.alpha is None else args.alpha,
                        beta=BETA if args.beta is None else args.beta, on_change=_on_change(args))
    return _summary(res, args.out)


def _manifest(args: argparse.Namespace) -> int:
    from mhubert.corpus.manifest import build_manifest

    res = build_manifest(args.out, root=args.root, tsv=args.tsv, min_seconds=args.min_seconds,
                         max_seconds=args.max_seconds, workers=args.workers,
                         progress=not args.quiet, on_change=_on_change(args))
    return _summary(res, args.out)


def _durations(p: argparse.ArgumentParser, workers: int) -> None:
    p.add_argument("--min-seconds", type=float, default=2.0, help="reject shorter files (default 2)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="reject longer files (default 30)")
    p.add_argument("--workers", type=int, default=workers,
                   help=f"concurrent header reads (default {workers})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="recompute a corpus committed with other settings (default: stop)")


# The registry's names (mhubert.corpus.sources.FORMATS; a test keeps them equal), listed here so
# that ``--help`` does not import the readers.
FORMATS = ("commonvoice", "voxlingua107", "fleurs", "mls", "voxpopuli", "lhotse", "hf", "dir", "tsv")


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="make the demo corpus; import and merge corpora")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")

    p = sub.add_parser("synth", help="speak a deterministic multilingual corpus with espeak-ng")
    p.add_argument("--out", required=True, help="corpus root URL (<root>/<dataset>/<lang>/<id>.wav)")
    p.add_argument("--languages", nargs="+", default=None, metavar="LANG",
                   help="languages (default: every language of mhubert.corpus.synth.LANGUAGES)")
    p.add_argument("--utterances", type=int, default=25,
                   help="average utterances per (language, dataset); amounts are uneven (default 25)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="pad shorter utterances to this")
    p.add_argument("--max-seconds", type=float, default=6.0, help="trim longer utterances to this")
    p.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 2),
                   help="parallel espeak-ng calls (default: 2 per core)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("import", help="import a dataset as released into a corpus artifact")
    p.add_argument("--format", required=True, choices=FORMATS, help="the source's layout")
    p.add_argument("--src", required=True, action="append",
                   help="source URL (repeat for several; they are joined)")
    p.add_argument("--out", required=True, help="corpus artifact URL")
    p.add_argument("--dataset", help="dataset name (default: the format's)")
    p.add_argument("--languages", help="comma-separated languages to keep (any spelling)")
    p.add_argument("--splits", help="comma-separated splits (commonvoice: a-b-c = a minus b and c; "
                                    "default validated-dev-test; fleurs/mls/voxpopuli: train)")
    p.add_argument("--trust-metadata", action="store_true",
                   help="do not read headers where the metadata has durations")
    _durations(p, 32)
    p.set_defaults(func=_import)

    p = sub.add_parser("merge", help="merge corpus artifacts into one")
    p.add_argument("inputs", nargs="+", help="corpus artifact URLs")
    p.add_argument("--out", required=True, help="merged corpus artifact URL")
    p.add_argument("--same-names", action="store_true",
                   help="equal dataset names are one dataset (default: rename later ones)")
    p.add_argument("--alpha", type=float, default=None,
                   help="language exponent for the stats (default: the data preset's alpha)")
    p.add_argument("--beta", type=float, default=None,
                   help="dataset exponent for the stats (default: the data preset's beta)")
    p.add_argument("--force", action="store_true", help="recompute a corpus committed differently")
    p.set_defaults(func=_merge)

    p = sub.add_parser("manifest", help="scan a corpus tree (or read a TSV): import --format dir|tsv")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="corpus root URL laid out <root>/<dataset>/<lang>/*.{wav,flac,ogg,mp3}")
    src.add_argument("--tsv", help="existing TSV: 4 columns, or fairseq's 2 columns (lang/dataset from path)")
    p.add_argument("--out", required=True, help="output directory URL")
    _durations(p, 8)
    p.set_defaults(func=_manifest)
