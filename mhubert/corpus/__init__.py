"""Corpora: importers of released datasets (``importer``, a registry of formats in ``sources`` with
the readers in ``formats_*``), one language code (``langs``), merging (``merge``), concurrent header
reads (``headers``), the corpus artifact's files (``report``) and the espeak-ng demo corpus
(``synth``). ``Manifest`` lives in :mod:`mhubert.artifacts.manifest`."""
