"""The manifest type: an audio root and its utterances, in the mHuBERT-147 fork's format.

Text format: the audio root on line 1, then one line per utterance
``path<TAB>n_samples<TAB>lang<TAB>dataset`` (path relative to the root, n_samples at 16 kHz).
fairseq's 2-column form (``path<TAB>n_samples``) is read too; lang and dataset then come from the
path ``<dataset>/<lang>/<file>``. Clustering, training, LID and evaluation all read it; the corpus
stage writes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

MANIFEST = "manifest.tsv"


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance: ``path`` relative to the manifest root, length in 16 kHz samples."""

    path: str
    n_samples: int
    lang: str
    dataset: str

    @property
    def seconds(self) -> float:
        return self.n_samples / SAMPLE_RATE


@dataclass
class Manifest:
    """An audio root and its utterances, in a fixed order (the order of label files too)."""

    root: str
    entries: list[ManifestEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> ManifestEntry:
        return self.entries[i]

    def __iter__(self):
        return iter(self.entries)

    # -- text form ---------------------------------------------------------------------------
    def to_text(self) -> str:
        lines = [self.root]
        for e in self.entries:
            lines.append(f"{e.path}\t{e.n_samples}\t{e.lang}\t{e.dataset}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "manifest") -> Manifest:
        """Parse the 4-column format (or fairseq's 2 columns, lang/dataset taken from the path)."""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise BadInput(f"{source}: empty manifest (no root line)")
        root = lines[0].strip()
        if "\t" in root:
            raise BadInput(f"{source}: line 1 must be the audio root, got a tab-separated row")
        entries = []
        for no, ln in enumerate(lines[1:], start=2):
            cols = ln.rstrip("\n").split("\t")
            if len(cols) not in (2, 4):
                raise BadInput(f"{source}:{no}: expected 2 or 4 tab-separated columns, got {len(cols)}")
            try:
                n = int(cols[1])
            except ValueError as e:
                raise BadInput(f"{source}:{no}: n_samples {cols[1]!r} is not an integer") from e
            if n < 0:
                raise BadInput(f"{source}:{no}: negative n_samples {n}")
            if len(cols) == 4:
                lang, dataset = cols[2], cols[3]
            else:
                lang, dataset = lang_dataset_from_path(cols[0])
            entries.append(ManifestEntry(cols[0], n, lang, dataset))
        return cls(root, entries)

    @classmethod
    def read(cls, url: str) -> Manifest:
        """Read a manifest file, or ``<dir>/manifest.tsv`` when ``url`` is a directory."""
        fs, path = storage.get_fs(url)
        if fs.isdir(path):
            url = storage.join(url, MANIFEST)
        return cls.from_text(storage.read_text(url), source=url)

    def write(self, url: str) -> None:
        """Atomically write the text form to ``url``."""
        storage.atomic_write_text(url, self.to_text())

    # -- queries -----------------------------------------------------------------------------
    def url_of(self, i: int) -> str:
        return storage.join(self.root, self.entries[i].path)

    @property
    def languages(self) -> list[str]:
        return sorted({e.lang for e in self.entries})

    @property
    def datasets(self) -> list[str]:
        return sorted({e.dataset for e in self.entries})

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(lang, dataset) of every utterance, in order (what TwoLevelSampler takes)."""
        return [(e.lang, e.dataset) for e in self.entries]

    @property
    def n_samples(self) -> list[int]:
        return [e.n_samples for e in self.entries]

    def counts(self, by: str = "utterances") -> dict[tuple[str, str], float]:
        """Utterances or hours per (lang, dataset)."""
        if by not in ("utterances", "hours"):
            raise BadInput(f"counts(by=...) must be 'utterances' or 'hours', got {by!r}")
        out: dict[tuple[str, str], float] = defaultdict(float)
        for e in self.entries:
            out[(e.lang, e.dataset)] += 1.0 if by == "utterances" else e.n_samples / SAMPLE_RATE / 3600
        return dict(out)

    def select(self, indices: Iterable[int]) -> Manifest:
        return Manifest(self.root, [self.entries[int(i)] for i in indices])

    def stats(self) -> dict:
        """Utterances and hours per language, per dataset, per (lang, dataset), and totals."""
        def agg(key) -> dict[str, dict[str, float]]:
            d: dict[str, dict[str, float]] = {}
            for e in self.entries:
                k = key(e)
                s = d.setdefault(k, {"utterances": 0, "hours": 0.0})
                s["utterances"] += 1
                s["hours"] += e.n_samples / SAMPLE_RATE / 3600
            return dict(sorted(d.items()))

        return {
            "languages": agg(lambda e: e.lang),
            "datasets": agg(lambda e: e.dataset),
            "lang_dataset": agg(lambda e: f"{e.lang}/{e.dataset}"),
            "total": {"utterances": len(self.entries),
                      "hours": sum(e.n_samples for e in self.entries) / SAMPLE_RATE / 3600},
        }


def lang_dataset_from_path(path: str) -> tuple[str, str]:
    """``<dataset>/<lang>/<file>`` (possibly deeper) -> (lang, dataset)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        raise BadInput(f"cannot infer lang/dataset from {path!r}: expected <dataset>/<lang>/<file>")
    return parts[-2], parts[-3]
