"""One training run, start to finish: decide (reuse / compute / resume), train, export, commit.

The run is a :class:`~mhubert.artifacts.TrainRun`; its marker holds the summary (``info``), the
settings that change the weights (:meth:`Recipe.settings`, ``num_classes``) and the inputs'
fingerprints (labels, manifest, init model). :func:`mhubert.artifacts.decide` applies the
no-stale-results rule before any work: a finished run with the same fingerprint is reused, another
one stops unless ``on_change`` is ``resume`` (continue its checkpoints with the new settings) or
``force`` (start again). A checkpoint written under other settings is held to the same rule.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from mhubert import storage
from mhubert.artifacts import (
    Labels,
    Manifest,
    StaleArtifact,
    TrainRun,
    decide,
    fingerprint,
)
from mhubert.artifacts.marker import hash_url
from mhubert.artifacts.marker import read as read_marker
from mhubert.artifacts.reuse import differences
from mhubert.data.dataset import LabeledAudio
from mhubert.errors import BadInput
from mhubert.train.callbacks import Callback
from mhubert.train.checkpoint import CheckpointStore
from mhubert.train.config import Recipe
from mhubert.train.dist import Dist, init_distributed, shutdown
from mhubert.train.preempt import StopRequest
from mhubert.train.telemetry import TENSORBOARD_DIR
from mhubert.train.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class RunArgs:
    """What ``python -m mhubert.train`` takes (all paths are fsspec URLs)."""

    manifest: str
    labels: str
    out: str
    preset: str = "base"
    init_from: str | None = None
    overrides: list[str] = field(default_factory=list)
    num_classes: int | None = None     # default: num_clusters in the labels' marker
    on_change: str = "stop"            # stop | resume | force (mhubert.artifacts.decide)


def input_fingerprint(url: str) -> str:
    """An input's identity: a committed artifact's fingerprint (or, for one committed without
    settings, the sha256 of its marker's file list), else the sha256 of the file itself."""
    m = read_marker(url)
    if m is not None:
        if m.fingerprint:
            return m.fingerprint
        files = sorted((k, v.sha256) for k, v in m.files.items())
        return hashlib.sha256(repr(files).encode()).hexdigest()
    fs, path = storage.get_fs(url)
    if fs.isfile(path):
        return hash_url(url).sha256
    raise BadInput(f"{url} is neither a committed artifact nor a file")


def plan_settings(args: RunArgs, recipe: Recipe | None = None) -> tuple[dict, dict]:
    """``(settings, inputs)`` of the run ``args`` describe: what its fingerprint is made of (read
    only; the labels must be committed). A pipeline's preflight compares them with a committed run."""
    recipe = recipe or Recipe.load(args.preset, args.overrides)
    labels = Labels(args.labels)
    num_classes = int(args.num_classes or labels.info.get("num_clusters") or 0)
    if num_classes < 1:
        raise BadInput(f"{labels.marker_url} has no num_clusters; pass --num-classes")
    settings = {"recipe": recipe.settings(), "num_classes": num_classes}
    inputs = {"labels": input_fingerprint(args.labels), "manifest": input_fingerprint(args.manifest),
              "init_model": input_fingerprint(args.init_from) if args.init_from else None}
    return settings, inputs


def _plan(args: RunArgs, recipe: Recipe, run: TrainRun) -> tuple[str, dict, dict, int]:
    """``(decision, settings, inputs, num_classes)`` (rank 0; may uncommit or clear the run)."""
    settings, inputs = plan_settings(args, recipe)
    num_classes = settings["num_classes"]
    decision = decide(run, settings, inputs, on_change=args.on_change, resumable=True)
    if decision == "compute":
        decision = _check_checkpoints(args.on_change, run, settings, inputs)
    return decision, settings, inputs, num_classes


def _check_checkpoints(on_change: str, run: TrainRun, settings: dict, inputs: dict) -> str:
    """An unfinished run's checkpoints under the same rule: the same fingerprint: go on from
    them; ``resume``: go on with the new settings; ``force``: remove them and start again;
    otherwise stop, naming what differs."""
    store = CheckpointStore(run)
    if on_change == "force":
        if storage.exists(run.checkpoints_url):
            log.warning("--force: removing the checkpoints and log of %s", run.url)
            storage.remove(run.checkpoints_url, recursive=True)
        if storage.exists(run.log_url):
            storage.remove(run.log_url)
        if storage.exists(run.path(TENSORBOARD_DIR)):
            storage.remove(run.path(TENSORBOARD_DIR), recursive=True)
        return "compute"
    record = store.latest_record()
    old = (record or {}).get("fingerprint")
    if old is None or old == fingerprint(run.kind, settings, inputs):
        return "compute"
    if on_change == "resume":
        log.warning("--resume: continuing the checkpoints of %s with new settings", run.url)
        return "resume"
    diff = differences(record.get("settings") or {}, settings) + differences(
        {f"input {k}": v for k, v in (record.get("inputs") or {}).items()},
        {f"input {k}": v for k, v in inputs.items()})
    shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    shown = shown or "another mhubert version"
    raise StaleArtifact(f"{run.url} holds checkpoints of a run with other settings ({shown}); "
                        "pass --resume (continue them with the new settings) or --force (start "
                        "again), or use another --out")


def train(args: RunArgs, stop_at: int | None = None, callbacks: list[Callback] | None = None
          ) -> dict[str, Any]:
    """Run, resume or reuse a pretraining run. ``stop_at`` (tests, debugging) ends the run after
    that many updates with a checkpoint, as an interruption would. Returns a summary with
    ``finished`` (or ``skipped`` when a finished run was reused) and ``preempted``."""
    recipe = Recipe.load(args.preset, args.overrides)
    run = TrainRun(args.out)
    stop = StopRequest().install()
    d = init_distributed()
    try:
        plan: Any = None
        if d.rank == 0:
            try:
                plan = _plan(args, recipe, run)
            except BadInput as e:  # tell the other ranks before failing, or they wait forever
                plan = e
        plan = d.gather(plan)[0]
        if isinstance(plan, BadInput):
            raise plan
        decision, settings, inputs, num_classes = plan
        if decision == "reuse":
            log.info("%s is finished with the same settings and inputs: nothing to do", run.url)
            return {"skipped": True, **run.marker(refresh=True).info}
        return _train(args, recipe, run, d, stop, settings, inputs, num_classes, stop_at,
                      list(callbacks or []))
    finally:
        stop.restore()
        for c in callbacks or []:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 (one failing close must not hide the result)
                log.warning("closing %r failed: %s", c, e)
        shutdown(d)


def _train(args: RunArgs, recipe: Recipe, run: TrainRun, d: Dist, stop: StopRequest,
           settings: dict, inputs: dict, num_classes: int, stop_at: int | None,
           callbacks: list[Callback]) -> dict[str, Any]:
    data = LabeledAudio(Manifest.read(args.manifest), Labels(args.labels), recipe.data)
    provenance = {"fingerprint": fingerprint(run.kind, settings, inputs), "settings": settings,
                  "inputs": inputs}
    trainer = Trainer(recipe, data, num_classes, d, run, callbacks, provenance=provenance, stop=stop)
    if not trainer.resume():
        if args.init_from:
            trainer.init_encoder(args.init_from)
        trainer.fresh_rng()
    summary = trainer.fit(stop_at)
    if not summary["finished"]:
        return summary
    trainer.export()
    if d.rank == 0:
        info = {k: v for k, v in summary.items() if k not in ("finished", "preempted")}
        run.commit(info, settings=settings, inputs=inputs)
    d.barrier()
    return summary
