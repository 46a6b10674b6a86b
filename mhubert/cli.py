"""The ``mhubert`` console command: one subcommand per stage.

Each area of the library registers its own subcommands (``register(subparsers)`` in the modules of
``COMMAND_MODULES``), so this file only dispatches and turns expected errors into one-line messages
(exit code 2) instead of tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mhubert import __version__
from mhubert.errors import MhubertError

# (module, is it optional): a module that fails to import because an optional dependency is
# missing (e.g. the API extras) drops its subcommands instead of breaking the whole CLI.
COMMAND_MODULES: list[str] = [
    "mhubert.corpus.cli",       # corpus synth | manifest
    "mhubert.features.cli",     # features mfcc
    "mhubert.clustering.cli",   # cluster sample | fit | assign | report
    "mhubert.train.cli",        # train run | render-job
    "mhubert.model.cli",        # model export | import
    "mhubert.lid.cli",          # lid train | evaluate
    "mhubert.eval.cli",         # eval superb
    "mhubert.pipeline_cli",     # pipeline compile | run
    "mhubert.jobs.cli",         # job render | submit | wait
    "api.cli",                  # serve
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mhubert",
        description="Pretrain compact multilingual HuBERT models (mHuBERT-147 recipe) and serve them.",
    )
    parser.add_argument("--version", action="version", version=f"mhubert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == name or name.startswith(e.name + ".")):
                continue  # area not present in this install
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except MhubertError as e:
        print(f"mhubert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"mhubert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
