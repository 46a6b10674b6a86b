"""The cost preview ``mhubert pipeline run`` prints before the first stage (``mhubert plan``'s).

:func:`pipelines.plan.plan_samples` needs the utterances' lengths. A manifest TSV has them in its
rows. A folder (``<dataset>/<lang>/<file>``, or ``<lang>/<file>`` with ``--dataset``) or
``--format``/``--src`` sources have not been imported yet: they are listed by the import's own
readers (:func:`mhubert.corpus.importer.read_sources`) and measured as the import will measure them:
from the audio headers (:func:`mhubert.corpus.headers.read_headers`, the import's reader: one ranged
read per file in most cases), with the import's rules for rows it rejects and for metadata
durations, then kept within the prepare stage's duration range. Up to :data:`PREVIEW_FILES` files are
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
from mhubert.corpus.importer import MISMATCH, read_sources
from mhubert.corpus.langs import try_normalize
from mhubert.corpus.sources import ReadOptions
from pipelines.plan import plan, plan_samples, render

PREVIEW_FILES = 1000   # audio files measured at most (a few seconds of ranged reads, even on S3)
NO_PREVIEW = ("hf",)   # formats whose reader writes the audio out (needs the import's output)


def corpus_lengths(fmt: str, sources: list[str], seconds: tuple[float, float], limit: int | None = None,
                   seed: int = 0) -> tuple[list[int], float, dict[str, Any]]:
    """``(lengths, scale, corpus)`` of the utterances the import of ``sources`` (laid out as ``fmt``)
    will keep, by the import's rules (rows the source rejects, duplicates and unknown language codes
    left out; the header's length, the metadata's where they differ by more than 1 %; unreadable
    files and lengths outside ``seconds`` dropped): lengths in 16 kHz samples of every usable file, or
    of a seeded random ``limit`` (default :data:`PREVIEW_FILES`) of them, ``scale`` = files /
    measured; and the ``corpus`` record :func:`plan_samples` takes."""
    limit = limit or PREVIEW_FILES
    root, rows = read_sources(fmt, sources, ReadOptions())
    live, seen = [], set()
    for r in rows:
        if r.reject is not None or r.path in seen:
            continue
        seen.add(r.path)
        lang, why = try_normalize(r.source_lang)
        if why is None:
            live.append((r, lang))
    picked = live if len(live) <= limit else [live[i] for i in sorted(random.Random(seed).sample(
        range(len(live)), limit))]
    url_of = (lambda p: storage.join(root, p)) if root else (lambda p: p)
    header, _ = read_headers([url_of(r.path) for r, _ in picked])
    lo, hi = round(seconds[0] * SAMPLE_RATE), round(seconds[1] * SAMPLE_RATE)
    lengths, langs = [], set()
    for (r, lang), h in zip(picked, header.tolist(), strict=True):
        if h <= 0:
            continue  # unreadable: the import rejects it
        n = r.n_samples if r.n_samples is not None and abs(r.n_samples - h) > MISMATCH * h else h
        if lo <= n <= hi:
            lengths.append(int(n))
            langs.add(lang)
    corpus = {"source": ", ".join(sources), "format": fmt, "languages": len(langs),
              "estimate": {"files": len(live), "sampled": len(picked),
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
