"""The project's own layouts: a corpus tree ``<root>/<dataset>/<lang>/<file>`` (``dir``) and an
existing manifest TSV (``tsv``, 4 columns or fairseq's 2). Nothing to borrow: these are our formats."""

from __future__ import annotations

from collections.abc import Iterator

from mhubert import storage
from mhubert.artifacts.manifest import Manifest, lang_dataset_from_path
from mhubert.corpus.report import SIDECAR, read_utterances
from mhubert.corpus.sources import AUDIO_EXTENSIONS, ReadOptions, Row, Source, register
from mhubert.errors import BadInput


def scan_root(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Audio files ``<dataset>/<lang>/<file>`` under ``root`` (relative, sorted), and the files
    skipped with why: other extensions inside the layout, audio files outside it. Files directly
    under the root (markers, transcripts) and hidden files are not reported."""
    fs, base = storage.get_fs(root)
    if not fs.isdir(base):
        raise BadInput(f"corpus root not found or not a directory: {root}")
    base = base.rstrip("/")
    found, skipped = [], []
    for p in fs.find(base):
        rel = p[len(base):].lstrip("/") if p.startswith(base) else p
        parts = rel.split("/")
        if len(parts) == 1 or any(x.startswith(".") for x in parts):
            continue
        is_audio = rel.lower().endswith(AUDIO_EXTENSIONS)
        if len(parts) == 3 and is_audio:
            found.append(rel)
        elif len(parts) == 3:
            skipped.append((rel, f"unsupported extension (expected one of {', '.join(AUDIO_EXTENSIONS)})"))
        elif is_audio:
            skipped.append((rel, "not laid out as <dataset>/<lang>/<file>"))
    return sorted(found), sorted(skipped)


@register("dir", "a corpus tree <src>/<dataset>/<lang>/*.{wav,flac,ogg,opus,mp3}")
def read_dir(src: str, opts: ReadOptions) -> Source:
    found, skipped = scan_root(src)
    side_url = storage.join(src, SIDECAR)  # written by `corpus synth`: speaker and text
    side = {u["path"]: u for u in read_utterances(side_url)} if storage.exists(side_url) else {}
    rows = []
    for rel in found:
        lang, dataset = lang_dataset_from_path(rel)
        u = side.get(rel, {})
        rows.append(Row(rel, lang, opts.dataset_or(dataset), u.get("speaker", ""), u.get("text", "")))
    rows += [Row(rel, "", "", reject=why) for rel, why in skipped]
    if not found:
        raise BadInput(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {src} "
                       "(expected <dataset>/<lang>/<file>)")
    return Source(src, rows)


@register("tsv", "an existing manifest: root line, then path<TAB>n_samples[<TAB>lang<TAB>dataset]")
def read_tsv_manifest(src: str, opts: ReadOptions) -> Source:
    m = Manifest.read(src)
    if not len(m):
        raise BadInput(f"{src}: the manifest lists no utterances")
    return Source(m.root, _manifest_rows(m, opts))  # n_samples are measured again


def _manifest_rows(m: Manifest, opts: ReadOptions, chunk: int = 1 << 16) -> Iterator[Row]:
    for a in range(0, len(m), chunk):
        b = min(a + chunk, len(m))
        for i, li, di in zip(range(a, b), m.lang_ids[a:b].tolist(), m.dataset_ids[a:b].tolist(), strict=True):
            yield Row(m.path(i), m.lang_names[li], opts.dataset_or(m.dataset_names[di]))
