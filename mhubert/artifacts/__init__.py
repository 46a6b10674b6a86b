"""The run's objects: one class per stage output, its files, its reader/writer and its commit marker.

The library, the components, the pipeline and the demo find and trust run objects only through
this package (``RunLayout(root).iteration(n).labels``, ``Labels(url).read()``, ``art.commit(...)``).
It sits at the bottom of the library, beside ``mhubert.config``: it imports only storage, errors and
constants, so every stage can read another stage's output without importing that stage.
"""

from mhubert.artifacts.base import Artifact
from mhubert.artifacts.labels import MAX_CLUSTERS, Labels, dictionary_text, km_lines, shard_name
from mhubert.artifacts.layout import ITERATIONS, Clustering, Iteration, RunLayout
from mhubert.artifacts.manifest import MANIFEST, Manifest, ManifestEntry, lang_dataset_from_path
from mhubert.artifacts.marker import MARKER, CorruptArtifact, FileRecord, Marker, fingerprint
from mhubert.artifacts.reuse import ON_CHANGE, StaleArtifact, content_digest, decide
from mhubert.artifacts.stages import (
    ClusteringSample,
    Corpus,
    EvalReport,
    Index,
    LidHead,
    Model,
    ServingBundle,
    TrainRun,
)

__all__ = [
    "Artifact", "ClusteringSample", "Clustering", "Corpus", "CorruptArtifact", "EvalReport",
    "FileRecord", "ITERATIONS", "Index", "Iteration", "Labels", "LidHead", "MANIFEST", "MARKER",
    "MAX_CLUSTERS", "Manifest", "ManifestEntry", "Marker", "Model", "RunLayout", "ServingBundle",
    "ON_CHANGE", "StaleArtifact", "TrainRun", "content_digest", "decide", "dictionary_text",
    "fingerprint", "km_lines", "lang_dataset_from_path", "shard_name",
]
