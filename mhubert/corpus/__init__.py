"""Corpora: the espeak-ng demo corpus (``synth``) and manifests (``manifest``)."""

from mhubert.corpus.manifest import Manifest, ManifestEntry

__all__ = ["Manifest", "ManifestEntry"]
