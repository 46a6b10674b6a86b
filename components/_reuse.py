"""The no-stale-results rule for the two stages whose artifact a component commits itself: the
iteration's :class:`~mhubert.artifacts.EvalReport` (``evaluate``) and the run's
:class:`~mhubert.artifacts.ServingBundle` (``publish``).

Each builds its settings (the component's arguments that shape the result) and its inputs (the
content digests of what it reads: :func:`mhubert.artifacts.content_digest`, so a retrained model
counts as another input even where its settings, and hence its fingerprint, are the same), asks
:func:`mhubert.artifacts.decide` before any work and commits with the same settings and inputs.
Neither can continue an old result from a checkpoint; under ``--resume`` (training continued, so
their inputs changed) they are recomputed, as under ``--force``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mhubert.artifacts import Artifact, content_digest, decide


def decide_derived(art: Artifact, settings: dict[str, Any], inputs: dict[str, str | None],
                   on_change: str, parts: Sequence[Artifact] = ()) -> str:
    """``"reuse"`` (printing ``<url>: reused``) or ``"compute"``; a different committed result under
    ``stop`` raises :class:`~mhubert.artifacts.StaleArtifact` before any work. ``parts``: nested
    artifacts (with their own markers, so not in ``art``'s) that a reused result must still hold."""
    decision = decide(art, settings, inputs, on_change="force" if on_change == "resume" else on_change)
    if decision == "reuse":
        missing = [p.url for p in parts if not p.is_committed()]
        if missing:
            print(f"{art.url}: recomputed ({', '.join(missing)} no longer committed)", flush=True)
            art.uncommit()
            return "compute"
        print(f"{art.url}: reused (same settings and inputs)", flush=True)
    return decision


def eval_settings(manifest_uri: str, labels_uri: str, model_uri: str, index_uri: str,
                  sample_url: str | None, preset: str, lid_probe: bool,
                  lid_overrides: Sequence[str], cluster_overrides: Sequence[str] = ()
                  ) -> tuple[dict[str, Any], dict[str, str | None]]:
    """``(settings, inputs)`` of the evaluate component: ``sample_url`` when the quality report
    scores the iteration's clustering sample (None: a reused index, nothing to score)."""
    settings = {"manifest": manifest_uri, "labels": labels_uri, "model": model_uri, "index": index_uri,
                "quality": sample_url is not None, "preset": preset, "lid_probe": bool(lid_probe),
                "lid_overrides": list(lid_overrides), "cluster_overrides": list(cluster_overrides)}
    inputs = {"manifest": content_digest(manifest_uri), "labels": content_digest(labels_uri),
              "model": content_digest(model_uri), "index": content_digest(index_uri),
              "sample": content_digest(sample_url) if sample_url is not None else None}
    return settings, inputs


def publish_settings(model_uri: str, lid_uri: str, manifest_uri: str, preset: str, iteration: int,
                     units_layer: int, units_clusters: int, cluster_overrides: Sequence[str]
                     ) -> tuple[dict[str, Any], dict[str, str | None]]:
    """``(settings, inputs)`` of the publish component (``units_layer`` and ``units_clusters`` as
    resolved from the preset)."""
    settings = {"model": model_uri, "lid": lid_uri or None, "manifest": manifest_uri, "preset": preset,
                "iteration": iteration, "units_layer": units_layer, "units_clusters": units_clusters,
                "cluster_overrides": list(cluster_overrides)}
    inputs = {"model": content_digest(model_uri), "lid": content_digest(lid_uri) if lid_uri else None,
              "manifest": content_digest(manifest_uri)}
    return settings, inputs
