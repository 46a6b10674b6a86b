"""The cost preview ``mhubert pipeline run`` prints before the first stage (``mhubert plan``'s).

:func:`pipelines.plan.plan_samples` needs the utterances' lengths. A manifest TSV has them in its
rows. A folder (``<dataset>/<lang>/<file>``, or ``<lang>/<file>`` with ``--dataset``) or
``--format``/``--src`` sources have not been imported yet: they are listed by the import's own
readers (:func:`mhubert.corpus.importer.read_sources`) and measured as the import will measure them,
from the release's metadata where it has durations, else from the audio headers
(:func:`mhubert.corpus.headers.read_headers`, the import's reader: one ranged read per file in most
cases), then kept within the prepare stage's duration range. Up to :data:`PREVIEW_FILES` files are
all measured; a larger corpus by a seeded random sample of that many, scaled to the whole, and the
preview says it is an estimate. The ``hf`` format writes its audio while it is read, so it has no
preview before the import.
"""

from __future__ import annotations

import random
from typing import Any

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.corpus.headers import read_headers
from mhubert.corpus.importer import read_sources
from mhubert.corpus.sources import ReadOptions
from pipelines.plan import plan, plan_samples, render

PREVIEW_FILES = 1000   # audio files measured at most (a few seconds of ranged reads, even on S3)
NO_PREVIEW = ("hf",)   # formats whose reader writes the audio out (needs the import's output)


def corpus_lengths(fmt: str, sources: list[str], seconds: tuple[float, float],
                   limit: int = PREVIEW_FILES, seed: int = 0) -> tuple[list[int], float, dict[str, Any]]:
    """``(lengths, scale, corpus)`` of the utterances the import of ``sources`` (laid out as ``fmt``)
    will keep: lengths in 16 kHz samples of every usable file or of a random ``limit`` of them
    (``scale`` = files / measured), and the ``corpus`` record :func:`plan_samples` takes."""
    root, rows = read_sources(fmt, sources, ReadOptions())
    live = [r for r in rows if r.reject is None]
    picked = live if len(live) <= limit else [live[i] for i in sorted(random.Random(seed).sample(
        range(len(live)), limit))]
    url_of = (lambda p: storage.join(root, p)) if root else (lambda p: p)
    need = [i for i, r in enumerate(picked) if r.n_samples is None]
    measured, _ = read_headers([url_of(picked[i].path) for i in need])
    n = [r.n_samples for r in picked]
    for i, v in zip(need, measured.tolist(), strict=True):
        n[i] = v
    lo, hi = round(seconds[0] * SAMPLE_RATE), round(seconds[1] * SAMPLE_RATE)
    lengths = [int(v) for v in n if v is not None and v > 0 and lo <= v <= hi]
    corpus = {"source": ", ".join(sources), "format": fmt,
              "languages": len({r.source_lang for r in live}),
              "estimate": {"files": len(live), "sampled": len(picked), "headers": len(need),
                           "range": f"{seconds[0]:g}-{seconds[1]:g} s"}}
    return lengths, (len(live) / len(picked) if picked else 1.0), corpus


def preview(corpus: str, corpus_format: str, sources: list[str], dataset: str | None, preset: str,
            nodes: int, gpus_per_node: int, gpu: str | None, overrides: list[str],
            iterations: tuple[int, ...]) -> str:
    """The preview's lines for a pipeline run's corpus (``corpus`` a manifest or folder URL as the
    preflight left it; or ``corpus_format`` and ``sources``)."""
    from pipelines.stale import PREPARE_SECONDS

    if sources:
        fmt, srcs = corpus_format, list(sources)
    elif corpus.endswith((".tsv", ".txt")) and not dataset:
        return render(plan(corpus, preset, nodes, gpus_per_node, gpu, overrides, iterations))
    else:  # a folder; with --dataset, the TSV the preflight wrote lists its files (lengths unknown)
        fmt, srcs = ("tsv" if dataset else "dir"), [corpus]
    if fmt in NO_PREVIEW:
        return (f"cost preview: the {fmt} format is measured by the import itself; after the prepare "
                "stage: mhubert plan --manifest <root>/corpus/manifest.tsv")
    try:
        lengths, scale, info = corpus_lengths(fmt, srcs, PREPARE_SECONDS)
    except OSError as e:  # the preview informs; the prepare stage reports what it cannot read
        return f"cost preview: could not read the corpus ({e})"
    if not lengths:
        est = info["estimate"]
        return (f"cost preview: none of the {est['sampled']:,} audio files measured is within "
                f"{est['range']}: the prepare stage will keep none")
    return render(plan_samples(info, lengths, preset, nodes, gpus_per_node, gpu, overrides, iterations,
                               scale=scale))


def device_kind() -> str | None:
    """The recorded-rate GPU kind of this machine's first CUDA device (``h200`` ...), if any."""
    import torch

    from pipelines.plan import RECORDED_RATES

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0).lower()
    return next((k for k in RECORDED_RATES if k in name), None)
