"""Run the pipeline on this machine with kfp.local's SubprocessRunner, quietly.

kfp.local's task cache is off: whether a committed result may be reused is each stage's decision
(:func:`mhubert.artifacts.decide` on its settings and inputs), and a cache hit would skip it. The
whole kfp output goes to ``<pipeline root>/run-<time>.log``; the terminal shows a line per task
(:class:`pipelines.progress.QuietRun`), and a failure ends with the failing stage's one-line cause
and the log's path.
"""

from __future__ import annotations

import datetime
import os
import sys
import warnings
from typing import Any

from mhubert import storage
from mhubert.errors import BadInput, MhubertError


class StageError(MhubertError):
    """A stage of a local run failed; the message is its one-line cause and where the log is."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_pipeline_root(root: str) -> str:
    lp = storage.local_path(root)
    return os.path.join(lp, "_kfp") if lp else os.path.abspath("build/kfp-local")


def train_totals(preset: str, overrides: list[str]) -> Any:
    """``totals(stage, iteration)``: the number of updates of a train task (for its progress bar)."""
    def totals(stage: str, n: int | None) -> int | None:
        if stage != "train" or n is None:
            return None
        try:
            from mhubert.config import iteration_train_overrides, load_sections
            from mhubert.train.config import TrainConfig

            items = [o for o in iteration_train_overrides(preset, n, overrides) if o.startswith("train.")
                     or "." not in o.split("=", 1)[0]]
            return int(load_sections(preset, {"train": TrainConfig}, items)["train"].max_update)
        except (MhubertError, KeyError, ValueError):
            return None
    return totals


def run_local(corpus: str, root: str, options: Any, arguments: dict[str, Any],
              pipeline_root: str | None = None, verbose: bool = False) -> str:
    """Run the pipeline here; returns the served model URL. ``arguments`` are pipeline parameters
    (``num_shards``, ``train_overrides``, ``on_change``, ...)."""
    from kfp import local

    from pipelines.mhubert_pipeline import build_pipeline
    from pipelines.progress import QuietRun, display_names

    if not (corpus or arguments.get("corpus_sources")) or not root:
        raise BadInput("--corpus (or --format/--src) and --root are required")
    pipeline_root = pipeline_root or default_pipeline_root(root)
    os.makedirs(pipeline_root, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(pipeline_root, f"run-{stamp}.log")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root,
               raise_on_error=True, enable_caching=False)
    pipeline = build_pipeline(options)
    names = display_names(pipeline)
    totals = train_totals(arguments.get("preset", options.preset), list(arguments.get("train_overrides", [])))
    print(f"running {len(options.iterations)} iteration(s) with kfp.local; full log: {log_path}", flush=True)
    quiet = QuietRun(log_path, root, names, totals, verbose=verbose, terminal=sys.stdout)
    with warnings.catch_warnings():
        # the runner warns about every non-"python" image name; ours are built for exactly this code
        warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
        try:
            with quiet:
                task = pipeline(corpus_uri=corpus, output_root=root, **arguments)
        except RuntimeError as e:
            where = quiet.failed or "a task"
            cause = quiet.cause or str(e)
            code = 2 if quiet.bad_input else 1
            raise StageError(f"{where} failed: {cause} (full log: {log_path})", code) from None
    return task.output

