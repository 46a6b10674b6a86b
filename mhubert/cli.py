"""The ``mhubert`` console command: one subcommand per stage.

The library's stages register their own subcommands (``register(subparsers)`` in the modules of
``COMMAND_MODULES``); the shells above the library (``api``: ``serve``; ``pipelines``: ``pipeline``,
``demo``) register theirs through the ``mhubert.commands`` entry-point group of the installed
distribution (``pyproject.toml``), so the library never imports its shells. This file only dispatches
and turns expected errors into one-line messages (exit code 2) instead of tracebacks.

Every registering module's top level stays light (no torch, faiss, kfp or transformers): ``mhubert
--help`` and ``mhubert <cmd> --help`` import only argparse-level code; the commands import the heavy
parts when they run (``tests/test_architecture.py`` checks it in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import entry_points

from mhubert import __version__, redaction, storage
from mhubert.errors import MhubertError
from mhubert.jobs.cli import add_render_job

COMMAND_MODULES: list[str] = [
    "mhubert.corpus.cli",       # corpus synth | manifest
    "mhubert.features.cli",     # features mfcc
    "mhubert.clustering.cli",   # cluster sample | fit | assign | report
    "mhubert.train.cli",        # train run | render-job
    "mhubert.model.cli",        # model export | import
    "mhubert.lid.cli",          # lid train | evaluate
    "mhubert.eval.cli",         # eval superb
    "mhubert.jobs.cli",         # job render | submit | wait
]
ENTRY_POINT_GROUP = "mhubert.commands"  # the shells' subcommands: serve, pipeline, demo


class UsageError(MhubertError):
    """Bad command-line usage (argparse's errors), raised by :func:`dispatch` instead of exiting."""


def shell_modules() -> list[str]:
    """The registering modules of the installed shells, by entry-point name."""
    return [ep.value for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mhubert",
        description="Pretrain compact multilingual HuBERT models (mHuBERT-147 recipe) and serve them.",
    )
    parser.add_argument("--version", action="version", version=f"mhubert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [*COMMAND_MODULES, *shell_modules()]:
        import_module(name).register(sub)
    # `mhubert train render-job` (= `mhubert job render` under training's name) is wired here, so the
    # train and jobs stages need not import each other
    add_render_job(_actions(sub.choices["train"]))
    return parser


def _actions(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse with the unknown-flag rule: an argument no parser knows is reported with the usage of
    the deepest subcommand named (not the top-level usage argparse shows by default)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = parser
        words = list(argv if argv is not None else sys.argv[1:])
        for w in words:
            subs = [a for a in target._actions if isinstance(a, argparse._SubParsersAction)]
            if subs and w in subs[0].choices:
                target = subs[0].choices[w]
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def dispatch(argv: Sequence[str]) -> int:
    """Run one command in this process and let its errors propagate (what components call: the
    same code path as the console command, without a second interpreter). Usage errors raise
    :class:`UsageError` instead of exiting."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as e:
        if e.code in (0, None):
            return 0
        raise UsageError(f"bad arguments for `mhubert {' '.join(argv[:2])}` (usage above)") from None
    if not getattr(args, "func", None):
        raise UsageError(f"`mhubert {' '.join(argv)}` names no command")
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install()  # DEBUG logs of botocore print request headers: mask credentials
    if not args.verbose:  # faiss's loader reports each CPU build it skips: noise that reads like a failure
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except MhubertError as e:
        print(f"mhubert {args.command}: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"mhubert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # object storage down past the retry budget, seen by code using get_fs
        gone = storage.unavailable(e)
        if gone is None:
            raise
        print(f"mhubert {args.command}: error: {gone}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
