"""``mhubert corpus synth`` and ``mhubert corpus manifest``."""

from __future__ import annotations

import argparse
import json
import os


def _synth(args: argparse.Namespace) -> int:
    from mhubert.corpus.synth import synthesize

    items = synthesize(args.out, languages=args.languages, utterances=args.utterances,
                       seed=args.seed, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                       workers=args.workers)
    print(json.dumps({"root": args.out, "utterances": len(items),
                      "languages": sorted({u.lang for u in items}),
                      "datasets": sorted({u.dataset for u in items})}))
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from mhubert.corpus.manifest import build_manifest

    result = build_manifest(args.out, root=args.root, tsv=args.tsv, min_seconds=args.min_seconds,
                            max_seconds=args.max_seconds, workers=args.workers,
                            progress=not args.quiet)
    m = result.manifest
    print(json.dumps({"manifest": args.out.rstrip("/") + "/manifest.tsv", "utterances": len(m),
                      "rejected": len(result.rejects), "languages": m.languages}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="make the demo corpus; build manifests")
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

    p = sub.add_parser("manifest", help="scan a corpus (or read a TSV) into manifest.tsv + stats")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="corpus root URL laid out <root>/<dataset>/<lang>/*.{wav,flac,ogg,mp3}")
    src.add_argument("--tsv", help="existing TSV: 4 columns, or fairseq's 2 columns (lang/dataset from path)")
    p.add_argument("--out", required=True, help="output directory URL")
    p.add_argument("--min-seconds", type=float, default=2.0, help="reject shorter files (default 2)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="reject longer files (default 30)")
    p.add_argument("--workers", type=int, default=8, help="parallel header reads (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_manifest)
