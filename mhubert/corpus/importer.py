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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mhubert import storage
from mhubert.artifacts import Corpus, Manifest, decide
from mhubert.constants import SAMPLE_RATE
from mhubert.corpus import formats_libs, formats_local, formats_release  # noqa: F401 - register
from mhubert.corpus.columns import RejectSpool, RowColumns
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


def read_sources(fmt: str, sources: Sequence[str], opts: ReadOptions) -> tuple[str, Iterator[Row]]:
    """(root, rows) of every source, the rows streamed; several sources: root "" and full URLs."""
    f = get(fmt)
    parts = [f.read(src.rstrip("/"), opts) for src in sources]  # each checks its layout now
    if len(parts) == 1:
        return parts[0].root, iter(parts[0].rows)

    def joined() -> Iterator[Row]:
        for p in parts:
            for r in p.rows:
                if p.root:
                    r.path = storage.join(p.root, r.path)
                yield r
    return "", joined()


def collect(rows: Iterable[Row], rejects: RejectSpool) -> RowColumns:
    """The rows as columns (those a reader rejects go straight to ``rejects``)."""
    cols = RowColumns(rejects)
    for r in rows:
        cols.append(r.path, r.source_lang, r.dataset, r.speaker, r.text, r.n_samples, r.reject)
    cols.finish()
    return cols


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
    rejects = RejectSpool()
    cols = collect(rows, rejects)
    try:
        m, utter, stats = _build(root, cols, keep, corpus, min_seconds, max_seconds, workers,
                                 trust_metadata, alpha, beta, progress)
        write_corpus(corpus, m, utter, rejects, stats, settings=settings,
                     info={"format": fmt, "sources": len(sources)})
        rejected = rejects.read()
    finally:
        cols.close()
        rejects.close()
    storage.remove(corpus.path(".progress"), recursive=True)
    log.info("import %s: %d kept, %d rejected -> %s", fmt, len(m), len(rejected), corpus.manifest_url)
    return ImportResult(m, rejected, stats, decision, corpus)


class _Urls(Sequence[str]):
    """The URLs of some rows, made when asked (no list of N strings)."""

    def __init__(self, cols: RowColumns, idx: np.ndarray, root: str) -> None:
        self.cols, self.idx, self.root = cols, idx, root

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        p = self.cols.path(int(self.idx[k]))
        return storage.join(self.root, p) if self.root else p


def _duplicates(cols: RowColumns, rejects: RejectSpool) -> np.ndarray:
    """Rows (indices) whose path an earlier row has: recorded as rejects, in row order. Rows whose
    path hash repeats are compared by their paths (a hash collision is not a duplicate)."""
    h = cols.hashes
    hs = np.sort(h)
    repeated = np.unique(hs[1:][hs[1:] == hs[:-1]])
    del hs
    if not len(repeated):
        return np.zeros(0, dtype=np.int64)
    dup = []
    first: dict[int, set[str]] = {}
    for i in np.flatnonzero(np.isin(h, repeated)).tolist():
        p = cols.path(i)
        seen = first.setdefault(int(h[i]), set())
        if p in seen:
            dup.append(i)
        seen.add(p)
    for i in dup:
        rejects.add(cols.path(i), "duplicate: the same file is listed twice")
    return np.asarray(dup, dtype=np.int64)


def _build(root: str, cols: RowColumns, keep: set[str] | None, corpus: Corpus, min_seconds: float,
           max_seconds: float, workers: int, trust_metadata: bool, alpha: float, beta: float,
           progress: bool) -> tuple[Manifest, Iterator[tuple[str, str, str, str]], dict[str, Any]]:
    """The manifest, the sidecar's rows (streamed) and the stats, from the rows' columns; every
    reject in ``cols.rejects``. Vectorised: only rejected rows are visited one by one."""
    rejects = cols.rejects
    n = len(cols)
    live = np.ones(n, dtype=bool)
    live[_duplicates(cols, rejects)] = False
    cols.drop_hashes()
    # one language code per source code, decided once per distinct code
    codes: list[str] = []
    code_of = np.full(max(len(cols.langs.names), 1), -1, dtype=np.int32)
    why_of: dict[int, str] = {}
    filtered_of = np.zeros(max(len(cols.langs.names), 1), dtype=bool)
    for k, src in enumerate(cols.langs.names):
        lang, why = try_normalize(src)
        if why is not None:
            why_of[k] = why
        elif keep is not None and lang not in keep:
            filtered_of[k] = True
        else:
            if lang not in codes:
                codes.append(lang)
            code_of[k] = codes.index(lang)
    known = code_of[cols.lang_ids] >= 0 if n else np.zeros(0, dtype=bool)
    for i in np.flatnonzero(live & ~known & ~filtered_of[cols.lang_ids]).tolist():
        rejects.add(cols.path(i), why_of[int(cols.lang_ids[i])])
    filtered = int((live & filtered_of[cols.lang_ids]).sum()) if n else 0
    live &= known
    del known
    idx = np.flatnonzero(live).astype(np.int32 if n < 2**31 else np.int64)
    del live
    meta = cols.n_samples[idx]  # int32 like the header lengths below: 4 bytes a row each
    need = np.flatnonzero(~(trust_metadata & (meta >= 0)))
    meter = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(need), desc="headers", unit="file")
        meter = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    measured, why = read_headers(_Urls(cols, idx[need], root), workers=workers,
                                 checkpoint=corpus.path(CHECKPOINT), progress=meter)
    header = np.full(len(idx), -1, dtype=np.int32)
    header[need] = np.minimum(measured, 2**31 - 1)
    bad = np.zeros(len(idx), dtype=bool)
    bad[need[list(why)]] = True
    has_meta = meta >= 0
    both = has_meta & (header > 0)
    mismatch = both & (np.abs(meta - header) > MISMATCH * header)
    # metadata is a rounding of the exact length (ms): keep the exact one, so that frame counts
    # (labels) agree with the decoded audio; a larger difference keeps the metadata's (counted)
    final = np.where(has_meta & ~(both & ~mismatch), meta, header)
    for j in np.flatnonzero(mismatch)[:10].tolist():
        log_mismatch(cols.path(int(idx[j])), int(meta[j]), int(header[j]))
    if mismatch.any():
        log.warning("%d utterance(s) whose metadata duration differs from the header by > 1%%",
                    int(mismatch.sum()))
    lo, hi = round(min_seconds * SAMPLE_RATE), round(max_seconds * SAMPLE_RATE)
    ok = ~bad & (final > 0) & (final >= lo) & (final <= hi)
    reasons = {int(need[j]): r for j, r in why.items()}
    for j in np.flatnonzero(~ok).tolist():
        x = int(final[j])
        if j in reasons:
            r = reasons[j]
        elif x <= 0:
            r = "zero-length audio (no frames)"
        elif x < lo:
            r = f"too short: {x / SAMPLE_RATE:.3f} s < {min_seconds} s"
        else:
            r = f"too long: {x / SAMPLE_RATE:.3f} s > {max_seconds} s"
        rejects.add(cols.path(int(idx[j])), r)
    kept, n_kept = idx[ok], final[ok].astype(np.int64)
    from_meta, mismatched = int(has_meta[ok].sum()), int(mismatch.sum())
    del idx, final, header, meta, has_meta, both, mismatch, bad, ok
    source_of, dataset_of = cols.lang_ids[kept], cols.dataset_ids[kept]
    cols.drop_columns()  # what is left of the rows: paths and the spool
    m = Manifest.from_columns(root, cols.take_paths(kept), n_kept, (code_of[source_of], codes),
                              (dataset_of, list(cols.datasets.names)))
    del dataset_of
    stats = corpus_stats(m, rejects, alpha, beta, duration_mismatch=mismatched,
                         filtered_by_language=filtered, durations_from_metadata=from_meta)

    def utterances() -> Iterator[tuple[str, str, str, str]]:
        src = cols.langs.names
        for k, (speaker, text) in enumerate(cols.records(kept)):
            yield m.path(k), speaker, src[source_of[k]], text
    return m, utterances(), stats


def formats_help() -> str:
    return "; ".join(f"{f.name}: {f.help}" for f in FORMATS.values())
