"""``python -m mhubert.train ARGS`` (the entry point torchrun and the PyTorchJob run)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mhubert.errors import MhubertError
from mhubert.train.cli import _run, add_run_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mhubert.train",
                                description="HuBERT pretraining (single process, torchrun, PyTorchJob)")
    add_run_args(p)
    args = p.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except MhubertError as e:
        print(f"mhubert.train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
