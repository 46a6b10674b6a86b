"""``mhubert corpus import``: read sources of one format, give every row one language code, measure
what the metadata does not, filter, and commit the corpus artifact.

:func:`import_corpus` is the library call the ``prepare`` component makes (a format and a list of
sources). Several sources are joined into one manifest: one source keeps its root, several give an
empty root line and full URLs.

Durations: every file's header is read (concurrently; ``trust_metadata`` skips the files whose
metadata has a duration). Where the metadata has one, it agrees within 1 % with the header in any
sane release, and the header's exact length is kept (metadata in milliseconds would otherwise shift
frame counts by one); a larger difference keeps the metadata's duration for filtering, counting and
sampling, is counted as ``duration_mismatch`` in the stats and logged, and frame counters (the
training loader, label assignment) go by the decoded audio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mhubert import storage
from mhubert.artifacts import Corpus, Manifest, decide
from mhubert.constants import SAMPLE_RATE
from mhubert.corpus import formats_libs, formats_local, formats_release  # noqa: F401 - register
from mhubert.corpus.headers import log_mismatch, read_headers
from mhubert.corpus.langs import normalize, try_normalize
from mhubert.corpus.report import ALPHA, BETA, corpus_stats, read_rejects, write_corpus
from mhubert.corpus.sources import FORMATS, ReadOptions, Row, get
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

MISMATCH = 0.01  # metadata vs header length, relative
CHECKPOINT = ".progress/headers"


@dataclass
class ImportResult:
    manifest: Manifest
    rejects: list[tuple[str, str]]
    stats: dict[str, Any]
    decision: str = "compute"
    corpus: Corpus | None = field(default=None, repr=False)

    @classmethod
    def reused(cls, corpus: Corpus) -> ImportResult:
        """The committed corpus, as a result (``decide`` said "reuse")."""
        return cls(corpus.read_manifest(), read_rejects(corpus.path(Corpus.REJECTS)), corpus.stats(),
                   "reuse", corpus)


def _language_filter(languages: Sequence[str] | None) -> set[str] | None:
    if not languages:
        return None
    out = set()
    for code in languages:
        out.add(normalize(code))  # an unknown code here is the user's: BadInput
    return out


def _wants(keep: set[str] | None):
    def wants(code: str) -> bool:
        if keep is None:
            return True
        lang, why = try_normalize(code)
        return why is not None or lang in keep  # unknown: kept so that it is rejected, not lost
    return wants


def read_sources(fmt: str, sources: Sequence[str], opts: ReadOptions) -> tuple[str, list[Row]]:
    """(root, rows) of every source; several sources: root "" and full URLs."""
    f = get(fmt)
    parts = [f.read(src.rstrip("/"), opts) for src in sources]
    if len(parts) == 1:
        return parts[0].root, parts[0].rows
    rows = []
    for p in parts:
        for r in p.rows:
            if p.root:
                r.path = storage.join(p.root, r.path)
            rows.append(r)
    return "", rows


def _identity(src: str) -> str:
    """A source as it enters the fingerprint: a local path made absolute (``my-corpus`` and
    ``/home/u/my-corpus`` are the same corpus), a URL as given; no trailing slash."""
    local = storage.local_path(src)
    return (os.path.abspath(local) if local is not None else src).rstrip("/")


def import_settings(fmt: str, sources: str | Sequence[str], *, dataset: str | None = None,
                    languages: Sequence[str] | None = None, splits: Sequence[str] | None = None,
                    min_seconds: float = 2.0, max_seconds: float = 30.0, trust_metadata: bool = False,
                    alpha: float = ALPHA, beta: float = BETA) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, inputs)`` of an import with these arguments: what the corpus's fingerprint is
    made of (a pipeline's preflight compares them with a committed corpus)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    keep = _language_filter(languages)
    settings = {"format": fmt, "sources": [_identity(s) for s in sources], "dataset": dataset,
                "languages": sorted(keep) if keep else None,
                "splits": list(splits) if splits else None, "min_seconds": min_seconds,
                "max_seconds": max_seconds, "trust_metadata": trust_metadata,
                "alpha": alpha, "beta": beta}
    return settings, {}


def import_corpus(fmt: str, sources: str | Sequence[str], out: str, *, dataset: str | None = None,
                  languages: Sequence[str] | None = None, splits: Sequence[str] | None = None,
                  min_seconds: float = 2.0, max_seconds: float = 30.0, workers: int = 32,
                  trust_metadata: bool = False, alpha: float = ALPHA, beta: float = BETA,
                  on_change: str = "stop", progress: bool = False) -> ImportResult:
    """Import ``sources`` laid out as ``fmt`` into the corpus artifact at ``out``."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise BadInput("no source given")
    get(fmt)
    if min_seconds < 0 or max_seconds <= 0 or min_seconds > max_seconds:
        raise BadInput(f"bad duration range [{min_seconds}, {max_seconds}] s")
    keep = _language_filter(languages)
    corpus = Corpus(out)
    settings, inputs = import_settings(fmt, sources, dataset=dataset, languages=languages, splits=splits,
                                       min_seconds=min_seconds, max_seconds=max_seconds,
                                       trust_metadata=trust_metadata, alpha=alpha, beta=beta)
    decision = decide(corpus, settings, inputs, on_change=on_change)
    if decision == "reuse":
        return ImportResult.reused(corpus)
    opts = ReadOptions(dataset=dataset, splits=tuple(splits) if splits else None, out=out,
                       wants=_wants(keep))
    root, rows = read_sources(fmt, sources, opts)
    result = _build(root, rows, keep, corpus, min_seconds, max_seconds, workers, trust_metadata,
                    alpha, beta, progress)
    write_corpus(corpus, result.manifest, result.utterances, result.rejects, result.stats,
                 settings=settings, info={"format": fmt, "sources": len(sources)})
    storage.remove(corpus.path(".progress"), recursive=True)
    log.info("import %s: %d kept, %d rejected -> %s", fmt, len(result.manifest),
             len(result.rejects), corpus.manifest_url)
    return ImportResult(result.manifest, result.rejects, result.stats, decision, corpus)


@dataclass
class _Built:
    manifest: Manifest
    utterances: list[tuple[str, str, str, str]]
    rejects: list[tuple[str, str]]
    stats: dict[str, Any]


def _build(root: str, rows: list[Row], keep: set[str] | None, corpus: Corpus, min_seconds: float,
           max_seconds: float, workers: int, trust_metadata: bool, alpha: float, beta: float,
           progress: bool) -> _Built:
    rejects: list[tuple[str, str]] = []
    seen: set[str] = set()
    live: list[tuple[Row, str]] = []
    filtered = 0
    for r in rows:
        if r.reject is None and r.path in seen:
            r.reject = "duplicate: the same file is listed twice"
        if r.reject is not None:
            rejects.append((r.path, r.reject))
            continue
        seen.add(r.path)
        lang, why = try_normalize(r.source_lang)
        if why is not None:
            rejects.append((r.path, why))
        elif keep is not None and lang not in keep:
            filtered += 1
        else:
            live.append((r, lang))
    url_of = (lambda p: storage.join(root, p)) if root else (lambda p: p)
    need = [i for i, (r, _) in enumerate(live) if not (trust_metadata and r.n_samples is not None)]
    meter = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(need), desc="headers", unit="file")
        meter = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    measured, why = read_headers([url_of(live[i][0].path) for i in need], workers=workers,
                                 checkpoint=corpus.path(CHECKPOINT), progress=meter)
    header = np.full(len(live), -1, dtype=np.int64)
    header[need] = measured
    bad = {need[j]: r for j, r in why.items()}
    lo, hi = round(min_seconds * SAMPLE_RATE), round(max_seconds * SAMPLE_RATE)
    keep_idx, n_final, mismatched = [], [], 0
    for i, (r, _) in enumerate(live):
        if i in bad:
            rejects.append((r.path, bad[i]))
            continue
        h = int(header[i])
        n = r.n_samples if r.n_samples is not None else h
        if r.n_samples is not None and h > 0:
            if abs(r.n_samples - h) > MISMATCH * h:  # the metadata's, counted and logged
                mismatched += 1
                if mismatched <= 10:
                    log_mismatch(r.path, r.n_samples, h)
            else:  # metadata is a rounding of the exact length (ms): keep the exact one, so that
                n = h  # frame counts (labels) agree with the decoded audio
        if n <= 0:
            rejects.append((r.path, "zero-length audio (no frames)"))
        elif n < lo:
            rejects.append((r.path, f"too short: {n / SAMPLE_RATE:.3f} s < {min_seconds} s"))
        elif n > hi:
            rejects.append((r.path, f"too long: {n / SAMPLE_RATE:.3f} s > {max_seconds} s"))
        else:
            keep_idx.append(i)
            n_final.append(n)
    if mismatched:
        log.warning("%d utterance(s) whose metadata duration differs from the header by > 1%%",
                    mismatched)
    kept = [live[i] for i in keep_idx]
    m = Manifest.from_columns(root, [r.path for r, _ in kept], np.asarray(n_final, dtype=np.int64),
                              [lang for _, lang in kept], [r.dataset for r, _ in kept])
    utter = [(r.path, r.speaker, r.source_lang, r.text) for r, _ in kept]
    stats = corpus_stats(m, rejects, alpha, beta, duration_mismatch=mismatched,
                         filtered_by_language=filtered,
                         durations_from_metadata=sum(1 for r, _ in kept if r.n_samples is not None))
    return _Built(m, utter, rejects, stats)


def formats_help() -> str:
    return "; ".join(f"{f.name}: {f.help}" for f in FORMATS.values())
