"""The registry of corpus formats and what every reader shares.

A reader turns one source (a URL laid out as a dataset was released) into a :class:`Source`: the
audio root and :class:`Row` s (path under that root, the source's own language code, dataset,
speaker, text, the duration when the metadata has one, or why the source itself already rejects the
row). Language codes, filters, header reads, rejects and the artifact are the importer's
(``mhubert.corpus.importer``); readers only read. Register one with :func:`register`.

Rows are streamed: a reader checks the layout when called and yields its rows lazily (``rows`` is
an iterator), its metadata files are read line by line (:func:`read_tsv`), and the audio folders it
checks rows against are held as :class:`~mhubert.corpus.columns.KeySet` s (:func:`listing`), so
that a reader holds no Python object per row; the importer stores them as columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mhubert import storage
from mhubert.corpus.columns import KeySet
from mhubert.errors import BadInput

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")


@dataclass(slots=True)
class Row:
    path: str                      # under the source's root ("" root: a full URL)
    source_lang: str
    dataset: str
    speaker: str = ""
    text: str = ""
    n_samples: int | None = None   # 16 kHz samples from the metadata, None: read the header
    reject: str | None = None      # the source already says it is unusable


@dataclass
class Source:
    root: str
    rows: Iterable[Row]


@dataclass
class ReadOptions:
    """What a reader may need besides the source URL."""

    dataset: str | None = None           # overrides the format's dataset name
    splits: tuple[str, ...] | None = None  # None: the format's default
    out: str | None = None               # the corpus artifact (readers that must write audio)
    wants: Callable[[str], bool] = field(default=lambda code: True)  # language filter on codes

    def dataset_or(self, default: str) -> str:
        return self.dataset or default


@dataclass(frozen=True)
class Format:
    name: str
    read: Callable[[str, ReadOptions], Source]
    help: str
    splits: tuple[str, ...] = ()         # the default selection, when the format has splits


FORMATS: dict[str, Format] = {}


def register(name: str, help: str, splits: tuple[str, ...] = ()):
    def deco(fn: Callable[[str, ReadOptions], Source]):
        if name in FORMATS:
            raise ValueError(f"format {name!r} registered twice")
        FORMATS[name] = Format(name, fn, help, splits)
        return fn
    return deco


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise BadInput(f"unknown corpus format {name!r}; choose from {', '.join(sorted(FORMATS))}") from None


# -- helpers the readers share ---------------------------------------------------------------------

def require_dir(url: str, what: str) -> None:
    fs, path = storage.get_fs(url)
    if not fs.isdir(path):
        raise BadInput(f"{what} not found or not a directory: {url}")


def subdirs(url: str) -> list[str]:
    """Names of the folders directly under ``url`` (sorted; hidden ones left out)."""
    fs, path = storage.get_fs(url)
    out = []
    for d in fs.ls(path, detail=True):
        name = d["name"].rstrip("/").rsplit("/", 1)[-1]
        if d.get("type") == "directory" and not name.startswith("."):
            out.append(name)
    return sorted(out)


def iter_files(url: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> Iterator[str]:
    """Paths relative to ``url`` of the files with ``extensions`` below it, as listed."""
    fs, path = storage.get_fs(url)
    base = path.rstrip("/")
    for p in fs.find(base):
        rel = p[len(base):].lstrip("/")
        if rel.lower().endswith(extensions) and not any(x.startswith(".") for x in rel.split("/")):
            yield rel


def files_under(url: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Paths relative to ``url`` of the files with ``extensions`` below it (sorted)."""
    return sorted(iter_files(url, extensions))


def listing(url: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> KeySet:
    """The files below ``url`` (relative paths), for ``rel in listing`` checks, 16 bytes a file."""
    return KeySet(iter_files(url, extensions))


def read_tsv(url: str, header: bool = True, columns: list[str] | None = None) -> Iterator[dict[str, str]]:
    """Rows of a tab-separated file as dicts, streamed line by line (no quoting: the releases'
    sentences hold quotes). ``header=False``: ``columns`` name the fields; extra fields are
    dropped, missing ones empty."""
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
        for r in reader:
            if not r or not any(x.strip() for x in r):
                continue
            if columns is None:
                if not header:
                    raise ValueError("read_tsv: header=False needs columns")
                columns = [c.strip() for c in r]
                continue
            yield {c: (r[i] if i < len(r) else "") for i, c in enumerate(columns)}


def tsv_or_none(url: str, **kw) -> Iterator[dict[str, str]] | None:
    return read_tsv(url, **kw) if storage.exists(url) else None


def missing_audio(rows: Iterable[Row], present: set[str] | KeySet, shown: Callable[[Row], str] | None = None
                  ) -> Iterator[Row]:
    """Mark rows whose file is not in ``present`` (a listing of the source) as rejected."""
    for r in rows:
        if r.reject is None and r.path not in present:
            r.reject = f"audio file not found: {shown(r) if shown else r.path}"
        yield r


def pick_splits(opts: ReadOptions, default: tuple[str, ...], known: Iterable[str]) -> tuple[str, ...]:
    splits = opts.splits or default
    known = set(known)
    bad = [s for s in splits if s not in known]
    if bad:
        raise BadInput(f"unknown split(s) {', '.join(bad)}; this format has {', '.join(sorted(known))}")
    return splits
