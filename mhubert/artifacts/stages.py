"""One class per stage output (besides ``Labels`` and the manifest, in their own modules).

Each names its files and its marker; readers and writers of their formats live with the stage
that writes them and go through these classes for where things are and whether they are committed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mhubert.artifacts.base import Artifact
from mhubert.artifacts.manifest import MANIFEST, Manifest


class Corpus(Artifact):
    """``manifest.tsv``, ``utterances.tsv`` (path, speaker, source_lang, text), ``stats.json``,
    ``hours_per_language.png``, ``rejects.tsv``."""

    kind: ClassVar[str] = "corpus"
    REQUIRED = (MANIFEST, "stats.json", "rejects.tsv")
    HINT = "run `mhubert corpus manifest` or `mhubert corpus import`"
    UTTERANCES = "utterances.tsv"
    STATS = "stats.json"
    PLOT = "hours_per_language.png"
    REJECTS = "rejects.tsv"

    @property
    def manifest_url(self) -> str:
        return self.path(MANIFEST)

    @property
    def utterances_url(self) -> str:
        return self.path(self.UTTERANCES)

    def read_manifest(self) -> Manifest:
        return Manifest.read(self.manifest_url)

    def stats(self) -> dict[str, Any]:
        return self.read_json(self.STATS)


class ClusteringSample(Artifact):
    """The budgeted feature sample: ``part-*.npy`` (float32 rows), ``segments.npy``."""

    kind: ClassVar[str] = "clustering-sample"
    REQUIRED = ("segments.npy",)
    HINT = "run `mhubert cluster sample`"


class Index(Artifact):
    """A fitted faiss index: ``index.faiss`` and ``centroids.npy`` (original-space centroids)."""

    kind: ClassVar[str] = "index"
    REQUIRED = ("index.faiss",)
    EXCLUDE = ("sample/",)
    HINT = "run `mhubert cluster fit`"
    INDEX = "index.faiss"
    CENTROIDS = "centroids.npy"

    @property
    def index_url(self) -> str:
        return self.path(self.INDEX)

    @property
    def centroids_url(self) -> str:
        return self.path(self.CENTROIDS)


class Model(Artifact):
    """A transformers ``HubertModel`` directory (``config.json``, ``model.safetensors``, ...)."""

    kind: ClassVar[str] = "model"
    REQUIRED = ("config.json",)
    HINT = "export one with `mhubert model export`"


class TrainRun(Artifact):
    """A pretraining run: ``checkpoints/step-*.pt`` + ``checkpoints/latest``, ``log.jsonl``,
    ``loss.png`` and, when finished, ``model/`` (a :class:`Model`) and the marker."""

    kind: ClassVar[str] = "train"
    EXCLUDE = ("checkpoints/",)
    HINT = "the run is not finished: run `mhubert train run` (it resumes from its last checkpoint)"
    LOG = "log.jsonl"
    PLOT = "loss.png"
    LATEST = "latest"

    @property
    def checkpoints_url(self) -> str:
        return self.path("checkpoints")

    def checkpoint_url(self, step: int) -> str:
        return self.path("checkpoints", f"step-{step:08d}.pt")

    @property
    def latest_pointer_url(self) -> str:
        return self.path("checkpoints", self.LATEST)

    @property
    def log_url(self) -> str:
        return self.path(self.LOG)

    @property
    def model(self) -> Model:
        return Model(self.path("model"))


class LidHead(Artifact):
    """A LID head: ``head.pt`` (weights, config and the extraction options) and ``labels.json``."""

    kind: ClassVar[str] = "lid-head"
    REQUIRED = ("head.pt", "labels.json")
    HINT = "run `mhubert lid train`"
    HEAD = "head.pt"
    LABELS = "labels.json"


class EvalReport(Artifact):
    """An iteration's evaluation: ``quality.json`` + ``cluster_sizes.{json,png}`` (pseudo-label
    quality), ``lid/`` (a :class:`LidHead`), ``lid-eval/`` (accuracy, confusion matrix), and the
    probes' ``superb/``."""

    kind: ClassVar[str] = "eval"
    QUALITY = "quality.json"
    SIZES = "cluster_sizes.json"
    SIZES_PLOT = "cluster_sizes.png"

    @property
    def lid(self) -> LidHead:
        return LidHead(self.path("lid"))

    @property
    def lid_eval_url(self) -> str:
        return self.path("lid-eval")

    @property
    def superb_url(self) -> str:
        return self.path("superb")


class ServingBundle(Artifact):
    """What ``mhubert serve`` is pointed at: ``model/`` (a :class:`Model`), optionally ``lid/`` (a
    :class:`LidHead`) and a units index, and ``registry.json`` (sources, iteration, layers)."""

    kind: ClassVar[str] = "serving"
    REQUIRED = ("registry.json",)
    HINT = "run the pipeline's publish step"
    REGISTRY = "registry.json"

    @property
    def model(self) -> Model:
        return Model(self.path("model"))

    @property
    def lid(self) -> LidHead:
        return LidHead(self.path("lid"))

    @property
    def units_index(self) -> Index:
        return Index(self.path("units"))

    def registry(self) -> dict[str, Any]:
        return self.read_json(self.REGISTRY)
