"""``mhubert corpus manifest --root/--tsv``: the ``dir`` and ``tsv`` formats of
``mhubert corpus import`` under their old names (kept for scripts and the pipeline's ``prepare``).

The manifest type itself lives in :mod:`mhubert.artifacts.manifest`; it is re-exported here for the
stages that still import it from this module.
"""

from __future__ import annotations

from mhubert.artifacts.manifest import Manifest, ManifestEntry, lang_dataset_from_path
from mhubert.corpus.formats_local import scan_root
from mhubert.corpus.importer import ImportResult, import_corpus
from mhubert.corpus.report import read_rejects
from mhubert.corpus.sources import AUDIO_EXTENSIONS
from mhubert.errors import BadInput

BuildResult = ImportResult


def build_manifest(out: str, root: str | None = None, tsv: str | None = None,
                   min_seconds: float = 2.0, max_seconds: float = 30.0, workers: int = 8,
                   progress: bool = True, on_change: str = "stop") -> ImportResult:
    """Scan ``root`` (``<dataset>/<lang>/*``) or read ``tsv``, and commit the corpus under ``out``."""
    if (root is None) == (tsv is None):
        raise BadInput("give exactly one of --root or --tsv")
    return import_corpus("dir" if root is not None else "tsv", root or tsv, out,
                         min_seconds=min_seconds, max_seconds=max_seconds, workers=workers,
                         progress=progress, on_change=on_change)


__all__ = ["AUDIO_EXTENSIONS", "BuildResult", "Manifest", "ManifestEntry", "build_manifest",
           "lang_dataset_from_path", "read_rejects", "scan_root"]
