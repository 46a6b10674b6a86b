"""Readers of the speech datasets' own release layouts: Common Voice, VoxLingua107, FLEURS, MLS,
VoxPopuli.

Read here rather than with lhotse's recipes: those recipes re-open every audio file serially to
measure it (which the importer does concurrently from headers, or skips where the metadata has
durations), know one Common Voice column set, and drop rows silently where this reader records a
reject with its reason. The layouts are a few TSV files each, read with the standard csv module.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Iterator

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.corpus.columns import KeySet
from mhubert.corpus.sources import (
    ReadOptions,
    Row,
    Source,
    files_under,
    listing,
    pick_splits,
    read_tsv,
    register,
    require_dir,
    subdirs,
    tsv_or_none,
)
from mhubert.errors import BadInput

log = logging.getLogger(__name__)
CV_SPLITS = ("validated", "train", "dev", "test", "other", "invalidated")
FLEURS_COLUMNS = ["id", "file_name", "raw_transcription", "transcription", "transcription_chars",
                  "num_samples", "gender"]
MLS_EXTENSIONS = (".flac", ".opus")
VOXPOPULI_COLUMNS = ["id", "raw_text", "normalized_text", "speaker_id", "split", "gender",
                     "is_gold_transcript", "accent"]


def _language_dirs(src: str, marker: str, opts: ReadOptions) -> list[tuple[str, str]]:
    """(folder relative to ``src``, language code) of each language folder: ``src`` itself when it
    holds ``marker``, else its sub-folders that do."""
    require_dir(src, "source")
    if storage.exists(storage.join(src, marker)):
        return [("", storage.basename(src.rstrip("/")))]
    out = [(d, d) for d in subdirs(src) if storage.exists(storage.join(src, d, marker))]
    if not out:
        raise BadInput(f"{src}: no language folder with {marker} (is this the right --format?)")
    return [(d, code) for d, code in out if opts.wants(code)]


def _rel(*parts: str) -> str:
    return "/".join(p for p in parts if p)


# -- Common Voice ------------------------------------------------------------------------------------

def _cv_selection(opts: ReadOptions) -> list[tuple[str, tuple[str, ...]]]:
    """Each requested split as (taken TSV, TSVs whose clips are taken out): ``validated-dev-test``."""
    out = []
    for spec in opts.splits or ("validated-dev-test",):
        take, *minus = spec.split("-")
        for s in (take, *minus):
            if s not in CV_SPLITS:
                raise BadInput(f"unknown Common Voice split {s!r}; choose from {', '.join(CV_SPLITS)} "
                               "(a-b-c: a minus the clips of b and c)")
        out.append((take, tuple(minus)))
    return out


@register("commonvoice", "Common Voice: <src>/<locale>/{validated,train,dev,test,...}.tsv + clips/*.mp3",
          splits=("validated-dev-test",))
def read_commonvoice(src: str, opts: ReadOptions) -> Source:
    folders = _language_dirs(src, "validated.tsv", opts)
    selection = _cv_selection(opts)
    return Source(src, _nonempty(_cv_rows(src, folders, selection, opts),
                                 f"{src}: no rows in the selected TSVs "
                                 f"({', '.join(opts.splits or ['validated'])})"))


def _cv_rows(src: str, folders: list[tuple[str, str]], selection: list[tuple[str, tuple[str, ...]]],
             opts: ReadOptions) -> Iterator[Row]:
    for folder, locale in folders:
        table = tsv_or_none(storage.join(src, folder, "clip_durations.tsv"))
        durations = KeySet.from_pairs(_cv_durations(table or ()))
        present = listing(storage.join(src, folder, "clips"))
        # the same clip in two selected TSVs is one utterance (a set only then: the default
        # selection is one TSV)
        seen: set[str] | None = set() if len(selection) > 1 else None
        for take, minus in selection:
            drop = {r["path"] for s in minus
                    for r in (tsv_or_none(storage.join(src, folder, f"{s}.tsv")) or ())}
            table = tsv_or_none(storage.join(src, folder, f"{take}.tsv"))
            if table is None:
                log.warning("%s: no %s.tsv, locale skipped", storage.join(src, folder), take)
                continue
            for r in table:
                clip = r.get("path", "")
                if not clip or clip in drop or (seen is not None and clip in seen):
                    continue
                if seen is not None:
                    seen.add(clip)
                row = Row(_rel(folder, "clips", clip), r.get("locale") or locale,
                          opts.dataset_or("commonvoice"), r.get("client_id", ""),
                          r.get("sentence", ""), durations.get(clip))
                if clip not in present:
                    row.reject = f"audio file not found: {_rel(folder, 'clips', clip)}"
                yield row


def _cv_durations(table: Iterable[dict[str, str]]) -> Iterator[tuple[str, int]]:
    for d in table:
        try:
            yield d["clip"], round(float(d["duration[ms]"]) * SAMPLE_RATE / 1000)
        except (KeyError, ValueError):
            continue


def _nonempty(rows: Iterable[Row], message: str) -> Iterator[Row]:
    """``rows``, raising :class:`BadInput` with ``message`` at the end when there was none."""
    empty = True
    for r in rows:
        empty = False
        yield r
    if empty:
        raise BadInput(message)


# -- VoxLingua107 ------------------------------------------------------------------------------------

@register("voxlingua107", "VoxLingua107: <src>/<code>/*.wav")
def read_voxlingua107(src: str, opts: ReadOptions) -> Source:
    require_dir(src, "source")
    rows = (Row(_rel(code, f), code, opts.dataset_or("voxlingua107"))
            for code in subdirs(src) if opts.wants(code)
            for f in files_under(storage.join(src, code)))
    return Source(src, _nonempty(rows, f"{src}: no <code>/*.wav files (is this the right --format?)"))


# -- FLEURS ------------------------------------------------------------------------------------------

@register("fleurs", "FLEURS: <src>/<lang_REGION>/{train,dev,test}.tsv + audio/<split>/*.wav",
          splits=("train",))
def read_fleurs(src: str, opts: ReadOptions) -> Source:
    splits = pick_splits(opts, ("train",), ("train", "dev", "test"))
    return Source(src, _fleurs_rows(src, _language_dirs(src, "train.tsv", opts), splits, opts))


def _fleurs_rows(src: str, folders: list[tuple[str, str]], splits: tuple[str, ...],
                 opts: ReadOptions) -> Iterator[Row]:
    for folder, code in folders:
        for split in splits:
            table = tsv_or_none(storage.join(src, folder, f"{split}.tsv"), header=False,
                                columns=FLEURS_COLUMNS) or ()
            present = listing(storage.join(src, folder, "audio", split))
            for r in table:
                try:
                    n: int | None = int(r["num_samples"])
                except ValueError:
                    n = None
                row = Row(r["file_name"], code, opts.dataset_or("fleurs"), text=r["raw_transcription"],
                          n_samples=n)
                if row.path not in present:
                    row.reject = f"audio file not found: {row.path}"
                row.path = _rel(folder, "audio", split, row.path)
                yield row


# -- Multilingual LibriSpeech ------------------------------------------------------------------------

@register("mls", "MLS: <src>/mls_<language>[_opus]/{train,dev,test}/transcripts.txt + audio/<spk>/<book>/",
          splits=("train",))
def read_mls(src: str, opts: ReadOptions) -> Source:
    require_dir(src, "source")
    base = storage.basename(src.rstrip("/"))
    folders = [""] if base.startswith("mls_") else [d for d in subdirs(src) if d.startswith("mls_")]
    if not folders:
        raise BadInput(f"{src}: no mls_<language> folder (is this the right --format?)")
    splits = pick_splits(opts, ("train",), ("train", "dev", "test"))
    return Source(src, _mls_rows(src, base, folders, splits, opts))


def _mls_rows(src: str, base: str, folders: list[str], splits: tuple[str, ...],
              opts: ReadOptions) -> Iterator[Row]:
    for folder in folders:
        language = (folder or base).removeprefix("mls_").removesuffix("_opus")
        if not opts.wants(language):
            continue
        for split in splits:
            url = storage.join(src, folder, split, "transcripts.txt")
            if not storage.exists(url):
                continue
            audio = listing(storage.join(src, folder, split, "audio"))
            for r in read_tsv(url, header=False, columns=["id", "text"]):
                uid = r["id"].strip()
                spk, book, _ = (uid.split("_") + ["", ""])[:3]
                want = _rel(spk, book, uid)
                rel = next((want + ext for ext in MLS_EXTENSIONS if want + ext in audio), None)
                row = Row(_rel(folder, split, "audio", rel or want + ".flac"), language,
                          opts.dataset_or("mls"), spk, r["text"])
                if rel is None:
                    row.reject = f"audio file not found: {_rel(folder, split, 'audio', want)}.{{flac,opus}}"
                yield row


# -- VoxPopuli ---------------------------------------------------------------------------------------

@register("voxpopuli", "VoxPopuli transcribed: <src>/<lang>/asr_<split>.tsv + <lang>/<year>/<id>.ogg",
          splits=("train",))
def read_voxpopuli(src: str, opts: ReadOptions) -> Source:
    splits = pick_splits(opts, ("train",), ("train", "dev", "test"))
    return Source(src, _voxpopuli_rows(src, _language_dirs(src, f"asr_{splits[0]}.tsv", opts), splits, opts))


def _voxpopuli_rows(src: str, folders: list[tuple[str, str]], splits: tuple[str, ...],
                    opts: ReadOptions) -> Iterator[Row]:
    for folder, code in folders:
        # the release's <year>/<id>.ogg, wherever a segment is: id -> path (VoxPopuli's transcribed
        # part is ~1.8k hours, a dict per language folder is small)
        audio = {posixpath.splitext(posixpath.basename(f))[0]: f
                 for f in files_under(storage.join(src, folder))}
        for split in splits:
            for r in tsv_or_none(storage.join(src, folder, f"asr_{split}.tsv")) or ():
                uid = r.get("id", "")
                rel = audio.get(uid)
                row = Row(_rel(folder, rel or posixpath.join(uid[:4], uid + ".ogg")), code,
                          opts.dataset_or("voxpopuli"), r.get("speaker_id", ""),
                          r.get("raw_text") or r.get("normalized_text", ""))
                if rel is None:
                    row.reject = f"audio file not found: {row.path}"
                yield row
