"""The evaluation corpus: a manifest plus its ``utterances.tsv`` sidecar (speakers, transcripts).

``utterances.tsv`` (written by ``corpus synth`` and ``corpus import`` next to ``manifest.tsv``) has the
header ``path<TAB>speaker<TAB>source_lang<TAB>text`` and the manifest's paths; empty fields mean
unknown. Corpora synthesised before the sidecar existed have ``transcripts.tsv`` in the audio root
(``path lang dataset voice speed pitch text``): it is read the same way, voice as speaker.

The manifest class is imported here only, so its home can change in one line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from mhubert import storage
from mhubert.artifacts import Manifest
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

SIDECAR = "utterances.tsv"
LEGACY_TRANSCRIPTS = "transcripts.tsv"
SIDECAR_HEADER = ("path", "speaker", "source_lang", "text")


@dataclass(frozen=True)
class Utterance:
    """One manifest row joined with its sidecar row (``speaker``/``text`` None when unknown)."""

    index: int          # row in the manifest
    path: str           # relative to the manifest root
    url: str
    n_samples: int
    lang: str
    speaker: str | None
    text: str | None

    @property
    def seconds(self) -> float:
        return self.n_samples / SAMPLE_RATE


def manifest_url(url: str) -> str:
    """``url`` itself, or ``<url>/manifest.tsv`` when ``url`` is a directory."""
    fs, path = storage.get_fs(url)
    if not fs.exists(path):
        raise BadInput(f"manifest not found: {url}")
    return storage.join(url, "manifest.tsv") if fs.isdir(path) else url


def _read_tsv(url: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(storage.read_text(url)), delimiter="\t",
                               quoting=csv.QUOTE_NONE))


def read_sidecar(url: str) -> dict[str, tuple[str | None, str | None]]:
    """``utterances.tsv`` -> {path: (speaker, text)}; raises BadInput on a wrong header."""
    text = storage.read_text(url)
    header = tuple(text.split("\n", 1)[0].rstrip("\r").split("\t"))
    if header[:len(SIDECAR_HEADER)] != SIDECAR_HEADER:
        raise BadInput(f"{url}: header must be {'<TAB>'.join(SIDECAR_HEADER)}, got {'<TAB>'.join(header)}")
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    return {r["path"]: (r.get("speaker") or None, r.get("text") or None) for r in rows}


def _read_legacy(url: str) -> dict[str, tuple[str | None, str | None]]:
    rows = _read_tsv(url)
    if rows and not {"path", "voice", "text"} <= set(rows[0]):
        raise BadInput(f"{url}: expected columns path, voice, text")
    return {r["path"]: (r.get("voice") or None, r.get("text") or None) for r in rows}


def load_corpus(url: str) -> list[Utterance]:
    """The utterances of the manifest at ``url`` (file or directory), with speakers and transcripts
    from the sidecar when there is one (else all unknown)."""
    murl = manifest_url(url)
    manifest = Manifest.read(murl)
    if len(manifest) == 0:
        raise BadInput(f"{murl}: the manifest has no utterances")
    sidecar = storage.join(storage.parent(murl), SIDECAR)
    legacy = storage.join(manifest.root, LEGACY_TRANSCRIPTS) if manifest.root else ""
    if storage.exists(sidecar):
        extra = read_sidecar(sidecar)
    elif legacy and storage.exists(legacy):
        extra = _read_legacy(legacy)
    else:
        extra = {}
    return [Utterance(i, e.path, manifest.url_of(i), e.n_samples, e.lang, *extra.get(e.path, (None, None)))
            for i, e in enumerate(manifest.entries)]
