"""The no-stale-results rule of a pipeline run, checked before any stage starts.

Each stage applies :func:`mhubert.artifacts.decide` itself when it runs; this walks the same chain
first, so that a run whose settings differ from what ``--root`` holds stops in seconds instead of
after the stages before the stale one ran. For each stage whose artifact is committed it builds the
settings and inputs the stage would use now, from the stage's own functions and the arguments its
component passes (``components/*.py``), and asks :func:`decide` with ``on_change="stop"``, which
never uncommits: the same one-line :class:`~mhubert.artifacts.StaleArtifact` the stage would raise.

An input produced earlier in the same run is the committed upstream artifact when that one is
reused (same fingerprint). Where a stage will compute (nothing committed), or ``--resume`` will
continue a training run with new settings, what comes after it depends on results not made yet: the
check stops there and leaves the rest to the stages. ``--force`` recomputes whatever differs, so
nothing is checked.
"""

from __future__ import annotations

from typing import Any

from mhubert.artifacts import Artifact, RunLayout, decide, fingerprint
from mhubert.clustering.assign import assign_inputs, assign_settings
from mhubert.clustering.cli import stage_config
from mhubert.clustering.fit import fit_settings
from mhubert.clustering.sample import sample_inputs, sample_settings
from mhubert.config import iteration_schedule, iteration_train_overrides, load_sections
from mhubert.corpus.importer import import_settings
from mhubert.corpus.manifest import manifest_settings
from mhubert.errors import BadInput
from mhubert.features.spec import FeatureSpec
from mhubert.lid.train import LidTrainConfig, lid_settings
from mhubert.train.run import RunArgs, plan_settings

# the prepare component's duration range (components/prepare.py defaults)
PREPARE_SECONDS = (2.0, 30.0)


def _reused(art: Artifact, settings: dict, inputs: dict, resumable: bool = False) -> bool:
    """True when ``art`` is committed with this fingerprint; False when it is not committed (the
    stage computes it); raises the stage's one-line StaleArtifact when it was made otherwise."""
    return decide(art, settings, inputs, on_change="stop", resumable=resumable) == "reuse"


def check(root: str, *args: Any, **kwargs: Any) -> None:
    """Raise :class:`~mhubert.artifacts.StaleArtifact` when a stage of this run would find its
    committed result made with other settings (see the module docstring; arguments: :func:`walk`).
    A root whose committed files cannot be read is named in one line too."""
    try:
        walk(root, *args, **kwargs)
    except OSError as e:
        raise BadInput(f"--root {root}: cannot compare its committed results with these settings: "
                       f"{e}") from None


def walk(root: str, corpus: str, preset: str, iterations: tuple[int, ...], on_change: str,
          num_shards: int, train_overrides: list[str], cluster_overrides: list[str],
          lid_overrides: list[str], lid_probe: bool = True, init_model: str = "",
          init_index: str = "", corpus_format: str = "", sources: Any = ()) -> None:
    """The chain of the run's stages, stopping at the first that computes or resumes."""
    if on_change == "force":
        return
    run = RunLayout(root)
    if sources:   # `--format F --src ...`: what the prepare component imports
        corpus_fp = import_settings(corpus_format, list(sources), min_seconds=PREPARE_SECONDS[0],
                                    max_seconds=PREPARE_SECONDS[1])
    else:
        tsv = corpus.endswith((".tsv", ".txt"))
        src: dict[str, Any] = {"tsv": corpus} if tsv else {"root": corpus}
        corpus_fp = manifest_settings(**src, min_seconds=PREPARE_SECONDS[0], max_seconds=PREPARE_SECONDS[1])
    if not _reused(run.corpus, *corpus_fp):
        return
    manifest = run.corpus.manifest_url
    sched = iteration_schedule(preset)
    model = init_model
    for n in iterations:
        it, step = sched[n - 1], run.iteration(n)
        hubert = it["features"] != "mfcc"
        spec = FeatureSpec(source=it["features"], model=model if hubert else None, layer=it["layer"])
        if init_index and n == iterations[0]:
            index_url = init_index
        else:
            cfg = stage_config(preset, {"num_clusters": it["num_clusters"]}, cluster_overrides)
            sample, index = step.clustering.sample, step.clustering.index
            if not _reused(sample, sample_settings(spec, cfg), sample_inputs(manifest, spec)):
                return
            if not _reused(index, fit_settings(cfg), {"sample": sample.fingerprint}):
                return
            index_url = index.index_url
        # the assign component passes the preset and the clustering overrides (components/assign.py)
        labels = step.labels
        assign_cfg = stage_config(preset, None, cluster_overrides)
        if not _reused(labels, assign_settings(spec, assign_cfg, num_shards),
                       assign_inputs(manifest, index_url, spec)):
            return
        train = step.train
        args = RunArgs(manifest=manifest, labels=labels.url, out=train.url, preset=preset,
                       init_from=model if it.get("warm_start") and model else None,
                       overrides=iteration_train_overrides(preset, n, list(train_overrides)))
        settings, inputs = plan_settings(args)
        if on_change == "resume":
            if not train.is_committed() or train.fingerprint != fingerprint(train.kind, settings, inputs):
                return  # continued with the new settings: what follows depends on it
        elif not _reused(train, settings, inputs, resumable=True):
            return
        model = train.model.url
        if lid_probe:
            cfg_lid = load_sections(preset, {"lid": LidTrainConfig}, list(lid_overrides))["lid"]
            _reused(step.eval.lid, *lid_settings(model, manifest, cfg_lid))
