"""Corpora already prepared by another library: lhotse manifests and Hugging Face ``datasets``
directories.

lhotse: the ``.jsonl(.gz)`` lines are read through fsspec (so ``s3://`` works) and turned into
Recording / SupervisionSegment / Cut objects by lhotse's own ``deserialize_item``. The manifest lists
whole files, so a supervision or cut that covers part of a recording is a reject (with its span).

Hugging Face: ``save_to_disk`` folders (``state.json`` + Arrow stream files, or ``dataset_dict.json``
over split folders) and parquet folders are read with pyarrow, the library ``datasets`` stores them
with; ``datasets`` itself is not imported because its releases pin fsspec and huggingface_hub ranges
that exclude the project's s3fs and transformers pins. The ``Audio`` column is taken undecoded
(the ``Audio(decode=False)`` form: ``{"bytes", "path"}``); embedded bytes are written out under the
corpus artifact's ``audio/`` so the manifest can point at files, and soundfile measures them.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
from collections.abc import Iterator

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.corpus.sources import (
    ReadOptions,
    Row,
    Source,
    files_under,
    register,
    require_dir,
)
from mhubert.errors import BadInput

SPAN_TOLERANCE_S = 0.01
LANG_COLUMNS = ("language", "lang", "locale", "lang_id", "language_code")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
TEXT_COLUMNS = ("sentence", "text", "raw_transcription", "transcription", "normalized_text")


# -- lhotse ------------------------------------------------------------------------------------------

def _lhotse_items(url: str) -> Iterator:
    from lhotse.serialization import deserialize_item

    data = storage.read_bytes(url)
    if url.endswith(".gz"):
        data = gzip.decompress(data)
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            yield deserialize_item(json.loads(line))


def _audio_url(rec, base: str) -> tuple[str | None, str | None]:
    src = rec.sources[0] if rec.sources else None
    if src is None or src.type != "file":
        return None, f"recording {rec.id}: source type {getattr(src, 'type', None)!r} is not a file"
    path = str(src.source)
    if "://" in path or path.startswith("/"):
        return path, None
    return storage.join(base, path), None  # relative paths: relative to the manifest's folder


def _lhotse_row(rec, sups: list, spans: list[tuple[float, float]], base: str, opts: ReadOptions) -> Row:
    """``spans``: (start, duration) in the recording of the cut and of each supervision."""
    url, why = _audio_url(rec, base)
    sup = sups[0] if sups else None
    row = Row(url or f"{rec.id}", (sup.language or "") if sup else "", opts.dataset_or("lhotse"),
              (sup.speaker or "") if sup else "", (sup.text or "") if sup else "",
              round(rec.num_samples * SAMPLE_RATE / rec.sampling_rate), why)
    if row.reject:
        return row
    if sup is None:
        row.reject = f"recording {rec.id}: no supervision (its language is unknown)"
    else:
        for start, duration in spans:
            if start > SPAN_TOLERANCE_S or duration < rec.duration - SPAN_TOLERANCE_S:
                row.reject = (f"recording {rec.id}: segment {start:.2f}-{start + duration:.2f} s of a "
                              f"{rec.duration:.2f} s recording (the manifest holds whole files)")
                break
    return row


@register("lhotse", "lhotse manifests: <src>/*recordings*.jsonl.gz + *supervisions*, or *cuts*.jsonl.gz")
def read_lhotse(src: str, opts: ReadOptions) -> Source:
    from lhotse import Recording, SupervisionSegment
    from lhotse.cut import Cut

    fs, path = storage.get_fs(src)
    files = ([""] if not fs.isdir(path) else
             files_under(src, (".jsonl", ".jsonl.gz", ".json", ".json.gz")))
    recs, sups, cuts = {}, {}, []
    for rel in files:
        url = storage.join(src, rel) if rel else src
        for item in _lhotse_items(url):
            if isinstance(item, Recording):
                recs[item.id] = (item, storage.parent(url))
            elif isinstance(item, SupervisionSegment):
                sups.setdefault(item.recording_id, []).append(item)
            elif isinstance(item, Cut):
                cuts.append((item, storage.parent(url)))
    if not recs and not cuts:
        raise BadInput(f"{src}: no lhotse Recording or Cut manifest found")
    rows = []
    for cut, base in cuts:
        ss = list(cut.supervisions)
        spans = [(cut.start, cut.duration)] + [(cut.start + s.start, s.duration) for s in ss]
        rows.append(_lhotse_row(cut.recording, ss, spans, base, opts))
    for rid, (rec, base) in recs.items():
        ss = sorted(sups.get(rid, []), key=lambda s: s.start)
        rows.append(_lhotse_row(rec, ss, [(s.start, s.duration) for s in ss], base, opts))
    return Source("", [r for r in rows if r.reject or opts.wants(r.source_lang)])


# -- Hugging Face datasets ---------------------------------------------------------------------------

def _hf_tables(src: str) -> Iterator[tuple[str, object, dict]]:
    """(split, pyarrow table, features dict) of each split of a save_to_disk or parquet folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def arrow_split(url: str) -> tuple[object, dict]:
        state = json.loads(storage.read_text(storage.join(url, "state.json")))
        info = json.loads(storage.read_text(storage.join(url, "dataset_info.json")))
        parts = []
        for f in state.get("_data_files", []):
            with storage.get_fs(url)[0].open(storage.get_fs(storage.join(url, f["filename"]))[1]) as fh:
                parts.append(pa.ipc.open_stream(fh).read_all())
        return pa.concat_tables(parts), info.get("features") or {}

    if storage.exists(storage.join(src, "dataset_dict.json")):
        for split in json.loads(storage.read_text(storage.join(src, "dataset_dict.json")))["splits"]:
            yield (split, *arrow_split(storage.join(src, split)))
        return
    if storage.exists(storage.join(src, "state.json")):
        yield ("train", *arrow_split(src))
        return
    by_split: dict[str, list[str]] = {}
    for rel in files_under(src, (".parquet",)):
        name = posixpath.basename(rel)
        by_split.setdefault(name.split("-")[0].split(".")[0], []).append(rel)
    if not by_split:
        raise BadInput(f"{src}: not a Hugging Face save_to_disk or parquet folder")
    fs = storage.get_fs(src)[0]
    for split, rels in sorted(by_split.items()):
        tables = []
        for rel in rels:
            with fs.open(storage.get_fs(storage.join(src, rel))[1]) as fh:
                tables.append(pq.read_table(fh))
        meta = (tables[0].schema.metadata or {}).get(b"huggingface")
        feats = json.loads(meta).get("info", {}).get("features", {}) if meta else {}
        yield split, pa.concat_tables(tables), feats


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in columns), None)


def _hf_audio_column(table, feats: dict) -> str:
    for name, f in feats.items():
        if isinstance(f, dict) and f.get("_type") == "Audio":
            return name
    for field in table.schema:
        if hasattr(field.type, "get_field_index") and field.type.get_field_index("bytes") >= 0:
            return field.name
    raise BadInput("no Audio column (a struct of bytes and path) in the dataset")


@register("hf", "a Hugging Face datasets folder (save_to_disk or parquet) with an Audio column")
def read_hf(src: str, opts: ReadOptions) -> Source:
    require_dir(src, "source")
    if opts.out is None:
        raise BadInput("the hf format needs the output corpus URL (its audio is written there)")
    audio_root = storage.join(opts.out, "audio")
    rows: list[Row] = []
    for split, table, feats in _hf_tables(src):
        if opts.splits and split not in opts.splits:
            continue
        cols = table.column_names
        audio_col = _hf_audio_column(table, feats)
        lang_col, spk_col, text_col = (_pick(cols, LANG_COLUMNS), _pick(cols, SPEAKER_COLUMNS),
                                       _pick(cols, TEXT_COLUMNS))
        label_names = (feats.get(lang_col) or {}).get("names") if lang_col else None
        data = {c: table.column(c).to_pylist() for c in (lang_col, spk_col, text_col) if c}
        audio = table.column(audio_col).to_pylist()
        for i, a in enumerate(audio):
            lang = data[lang_col][i] if lang_col else ""
            if label_names is not None and isinstance(lang, int):
                lang = label_names[lang]
            row = Row("", str(lang or ""), opts.dataset_or("hf"),
                      str(data[spk_col][i] or "") if spk_col else "",
                      str(data[text_col][i] or "") if text_col else "")
            if not lang_col:
                row.reject = f"no language column (one of {', '.join(LANG_COLUMNS)})"
            a = a or {}
            if a.get("bytes"):
                ext = os.path.splitext(a.get("path") or "")[1].lower() or ".wav"
                row.path = storage.join(audio_root, split, f"{i:08d}{ext}")
                storage.atomic_write(row.path, a["bytes"])
            elif a.get("path"):
                p = a["path"]
                row.path = p if ("://" in p or p.startswith("/")) else storage.join(src, p)
            else:
                row.path, row.reject = f"{split}/{i}", "no audio (neither bytes nor a path)"
            rows.append(row)
    return Source("", [r for r in rows if r.reject or opts.wants(r.source_lang)])


__all__ = ["read_hf", "read_lhotse"]
