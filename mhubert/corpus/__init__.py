"""Corpora: the espeak-ng demo corpus (``synth``) and manifests (``manifest``; the manifest type
itself is :class:`mhubert.artifacts.Manifest`)."""
