"""``mhubert corpus manifest --root/--tsv``: the ``dir`` and ``tsv`` formats of
``mhubert corpus import`` under their old names (kept for scripts and the pipeline's ``prepare``).

The manifest type itself lives in :mod:`mhubert.artifacts.manifest`; it is re-exported here for the
stages that still import it from this module.
"""

from __future__ import annotations

from mhubert.artifacts.manifest import Manifest, ManifestEntry, lang_dataset_from_path
from mhubert.corpus.formats_local import scan_root
from mhubert.corpus.importer import ImportResult, import_corpus, import_settings
from mhubert.corpus.report import read_rejects
from mhubert.corpus.sources import AUDIO_EXTENSIONS
from mhubert.errors import BadInput

BuildResult = ImportResult


def _source(root: str | None, tsv: str | None) -> tuple[str, str]:
    if (root is None) == (tsv is None):
        raise BadInput("give exactly one of --root or --tsv")
    return ("dir", root) if root is not None else ("tsv", tsv)  # type: ignore[return-value]


def manifest_settings(root: str | None = None, tsv: str | None = None, min_seconds: float = 2.0,
                      max_seconds: float = 30.0) -> tuple[dict, dict]:
    """``(settings, inputs)`` of :func:`build_manifest` with these arguments (its fingerprint)."""
    fmt, src = _source(root, tsv)
    return import_settings(fmt, src, min_seconds=min_seconds, max_seconds=max_seconds)


def build_manifest(out: str, root: str | None = None, tsv: str | None = None,
                   min_seconds: float = 2.0, max_seconds: float = 30.0, workers: int = 8,
                   progress: bool = True, on_change: str = "stop") -> ImportResult:
    """Scan ``root`` (``<dataset>/<lang>/*``) or read ``tsv``, and commit the corpus under ``out``."""
    fmt, src = _source(root, tsv)
    return import_corpus(fmt, src, out,
                         min_seconds=min_seconds, max_seconds=max_seconds, workers=workers,
                         progress=progress, on_change=on_change)


__all__ = ["AUDIO_EXTENSIONS", "BuildResult", "Manifest", "ManifestEntry", "build_manifest",
           "lang_dataset_from_path", "manifest_settings", "read_rejects", "scan_root"]
