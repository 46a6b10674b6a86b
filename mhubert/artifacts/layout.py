"""Where a run's objects live: the one place that knows the layout of a run root.

::

    <root>/corpus/                  Corpus
    <root>/iter{n}/clustering/sample/   ClusteringSample
    <root>/iter{n}/clustering/      Index
    <root>/iter{n}/labels/          Labels
    <root>/iter{n}/train/           TrainRun (model/ inside)
    <root>/iter{n}/eval/            EvalReport (lid/ inside)
    <root>/serving/                 ServingBundle
"""

from __future__ import annotations

from dataclasses import dataclass

from mhubert import storage
from mhubert.artifacts.labels import Labels
from mhubert.artifacts.stages import ClusteringSample, Corpus, EvalReport, Index, ServingBundle, TrainRun
from mhubert.errors import BadInput

ITERATIONS = (1, 2, 3)


@dataclass(frozen=True)
class Clustering:
    """``iter{n}/clustering``: the sample and the index fitted on it."""

    url: str

    @property
    def sample(self) -> ClusteringSample:
        return ClusteringSample(storage.join(self.url, "sample"))

    @property
    def index(self) -> Index:
        return Index(self.url)


@dataclass(frozen=True)
class Iteration:
    """The objects of one pretraining iteration."""

    root: str
    n: int

    @property
    def url(self) -> str:
        return storage.join(self.root, f"iter{self.n}")

    @property
    def clustering(self) -> Clustering:
        return Clustering(storage.join(self.url, "clustering"))

    @property
    def labels(self) -> Labels:
        return Labels(storage.join(self.url, "labels"))

    @property
    def train(self) -> TrainRun:
        return TrainRun(storage.join(self.url, "train"))

    @property
    def eval(self) -> EvalReport:
        return EvalReport(storage.join(self.url, "eval"))


@dataclass(frozen=True)
class RunLayout:
    """``RunLayout(root).iteration(2).labels`` is the ``Labels`` of iteration 2 of the run at ``root``."""

    root: str

    def __post_init__(self) -> None:
        if not self.root:
            raise BadInput("empty run root")
        object.__setattr__(self, "root", self.root.rstrip("/"))

    @property
    def corpus(self) -> Corpus:
        return Corpus(storage.join(self.root, "corpus"))

    def iteration(self, n: int) -> Iteration:
        if n not in ITERATIONS:
            raise BadInput(f"iteration must be one of {ITERATIONS}, got {n}")
        return Iteration(self.root, n)

    @property
    def serving(self) -> ServingBundle:
        return ServingBundle(storage.join(self.root, "serving"))

    def locations(self, iterations: tuple[int, ...] = ITERATIONS) -> dict[str, str]:
        """What a person wants to find after a run, by name."""
        out = {"manifest": self.corpus.manifest_url}
        for n in iterations:
            it = self.iteration(n)
            out[f"iter{n} labels"] = it.labels.url
            out[f"iter{n} index"] = it.clustering.index.url
            out[f"iter{n} model"] = it.train.model.url
            out[f"iter{n} eval"] = it.eval.url
        out["serving"] = self.serving.url
        return out
