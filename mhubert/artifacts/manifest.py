"""The manifest type: an audio root and its utterances, in the mHuBERT-147 fork's format.

Text format: the audio root on line 1, then one line per utterance
``path<TAB>n_samples<TAB>lang<TAB>dataset`` (path relative to the root, n_samples at 16 kHz).
An empty root line means the paths are full URLs (a merge of corpora under different roots; the
fork's ``os.path.join("", path)`` gives the path unchanged too). fairseq's 2-column form
(``path<TAB>n_samples``) is read too; lang and dataset then come from the path
``<dataset>/<lang>/<file>``. Clustering, training, LID and evaluation all read it; the corpus stage
writes it.

The manifest is columnar so that a 30-million-utterance corpus fits in a few GB: paths are one
UTF-8 byte buffer with offsets, ``n_samples`` an int64 array, languages and datasets small integer
ids into sorted name lists. The 4-column text is parsed by pyarrow's CSV reader (multi-threaded C++,
streamed from the file); anything it refuses is re-read by the plain parser, which names the line.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

MANIFEST = "manifest.tsv"
_CHUNK = 1 << 20  # rows per vectorised chunk (gathering paths, writing text)


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


def _encode_names(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(int32 ids, sorted names) of a sequence of strings."""
    names = sorted(set(values))
    pos = {n: i for i, n in enumerate(names)}
    return np.fromiter((pos[v] for v in values), dtype=np.int32, count=len(values)), names


def _gather(blob: np.ndarray, off: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte buffer and offsets of the strings ``idx`` (in that order), chunk by chunk."""
    starts = off[idx]
    lens = off[idx + 1] - starts
    new_off = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    out = np.empty(int(new_off[-1]), dtype=np.uint8)
    for a in range(0, len(idx), _CHUNK):
        b = min(a + _CHUNK, len(idx))
        lo, hi = int(new_off[a]), int(new_off[b])
        src = np.repeat(starts[a:b] - new_off[a:b], lens[a:b]) + np.arange(lo, hi, dtype=np.int64)
        out[lo:hi] = blob[src]
    return out, new_off


class Manifest:
    """An audio root and its utterances, in a fixed order (the order of label files too).

    ``Manifest(root, entries)`` builds one from :class:`ManifestEntry` objects; readers and large
    builders use :meth:`from_columns`. ``m[i]`` is a :class:`ManifestEntry`; the columns are
    ``n_samples`` (int64), ``lang_ids``/``lang_names`` and ``dataset_ids``/``dataset_names``.
    """

    def __init__(self, root: str, entries: Iterable[ManifestEntry] = ()):
        entries = list(entries)
        paths = [e.path for e in entries]
        lid, lnames = _encode_names([e.lang for e in entries])
        did, dnames = _encode_names([e.dataset for e in entries])
        self._set(root, *self._pack(paths), np.array([int(e.n_samples) for e in entries],
                                                     dtype=np.int64), lid, lnames, did, dnames)

    @staticmethod
    def _pack(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = [p.encode("utf-8") for p in paths]
        off = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(b) for b in enc), dtype=np.int64, count=len(enc)), out=off[1:])
        return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), off

    def _set(self, root, blob, off, n_samples, lang_ids, lang_names, dataset_ids, dataset_names):
        self.root = root.rstrip("/") if root else ""
        self._blob, self._off = blob, off
        self.n_samples = np.asarray(n_samples, dtype=np.int64)
        self.lang_ids = np.asarray(lang_ids, dtype=np.int32)
        self.lang_names = list(lang_names)
        self.dataset_ids = np.asarray(dataset_ids, dtype=np.int32)
        self.dataset_names = list(dataset_names)
        if (self.n_samples < 0).any():
            raise BadInput(f"negative n_samples {int(self.n_samples.min())} in the manifest")

    @classmethod
    def from_columns(cls, root: str, paths: Sequence[str] | tuple[np.ndarray, np.ndarray],
                     n_samples, langs: Sequence[str] | tuple[np.ndarray, Sequence[str]],
                     datasets: Sequence[str] | tuple[np.ndarray, Sequence[str]]) -> Manifest:
        """Build from columns: ``paths`` as strings or (utf-8 buffer, offsets); ``langs`` and
        ``datasets`` as strings or (ids, names)."""
        m = cls.__new__(cls)
        blob_off = paths if isinstance(paths, tuple) else cls._pack(paths)
        lang = langs if isinstance(langs, tuple) else _encode_names(langs)
        data = datasets if isinstance(datasets, tuple) else _encode_names(datasets)
        m._set(root, *blob_off, n_samples, *lang, *data)
        if not (len(m.n_samples) == len(m.lang_ids) == len(m.dataset_ids) == len(m._off) - 1):
            raise BadInput("manifest columns have different lengths")
        return m.compact()

    def compact(self) -> Manifest:
        """Drop unused language/dataset names and keep the names sorted (ids renumbered)."""
        for ids_attr, names_attr in (("lang_ids", "lang_names"), ("dataset_ids", "dataset_names")):
            ids, names = getattr(self, ids_attr), getattr(self, names_attr)
            used = np.flatnonzero(np.bincount(ids, minlength=len(names))) if len(ids) else []
            keep = sorted((int(i) for i in used), key=lambda i: names[i])
            remap = np.full(max(len(names), 1), -1, dtype=np.int32)
            remap[keep] = np.arange(len(keep), dtype=np.int32)
            setattr(self, ids_attr, remap[ids] if len(ids) else ids)
            setattr(self, names_attr, [names[i] for i in keep])
        return self

    # -- rows ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.n_samples)

    def path(self, i: int) -> str:
        return bytes(self._blob[self._off[i]:self._off[i + 1]]).decode("utf-8")

    def __getitem__(self, i: int) -> ManifestEntry:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"manifest index {i} out of range ({n} utterances)")
        return ManifestEntry(self.path(i), int(self.n_samples[i]),
                             self.lang_names[self.lang_ids[i]],
                             self.dataset_names[self.dataset_ids[i]])

    def __iter__(self) -> Iterator[ManifestEntry]:
        return (self[i] for i in range(len(self)))

    @property
    def entries(self) -> list[ManifestEntry]:
        """All rows as objects (a fresh list: a compatibility view, slow for large manifests)."""
        return list(self)

    @property
    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    @property
    def langs(self) -> np.ndarray:
        """The language of every utterance (object array)."""
        return np.asarray(self.lang_names, dtype=object)[self.lang_ids]

    @property
    def dataset_of(self) -> np.ndarray:
        return np.asarray(self.dataset_names, dtype=object)[self.dataset_ids]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Manifest) and self.root == other.root and len(self) == len(other)
                and all(a == b for a, b in zip(self, other, strict=True)))

    def __repr__(self) -> str:
        return f"Manifest({self.root!r}, {len(self)} utterances)"

    # -- text form -----------------------------------------------------------------------------
    def _lines(self) -> Iterator[str]:
        yield self.root + "\n"
        for a in range(0, len(self), _CHUNK):
            b = min(a + _CHUNK, len(self))
            text = bytes(self._blob[self._off[a]:self._off[b]]).decode("utf-8")
            rel = self._off[a:b + 1] - self._off[a]
            # offsets are in bytes; slice the bytes, not the str, when paths are not ASCII
            if len(text) != rel[-1]:
                raw = bytes(self._blob[self._off[a]:self._off[b]])
                ps = [raw[rel[k]:rel[k + 1]].decode("utf-8") for k in range(b - a)]
            else:
                ps = [text[rel[k]:rel[k + 1]] for k in range(b - a)]
            ln, dn = self.lang_names, self.dataset_names
            yield "".join(f"{p}\t{n}\t{ln[li]}\t{dn[di]}\n" for p, n, li, di in zip(
                ps, self.n_samples[a:b].tolist(), self.lang_ids[a:b].tolist(),
                self.dataset_ids[a:b].tolist(), strict=True))

    def to_text(self) -> str:
        return "".join(self._lines())

    @classmethod
    def from_text(cls, text: str, source: str = "manifest") -> Manifest:
        """Parse the 4-column format (or fairseq's 2 columns, lang/dataset taken from the path)."""
        return cls._parse(io.BytesIO(text.encode("utf-8")), source)

    @classmethod
    def _parse(cls, f, source: str) -> Manifest:
        first = f.readline()
        if not first:
            raise BadInput(f"{source}: empty manifest (no root line)")
        root = first.decode("utf-8").rstrip("\r\n").strip()
        if "\t" in root:
            raise BadInput(f"{source}: line 1 must be the audio root, got a tab-separated row")
        pos = f.tell()
        probe = f.readline()
        while probe and not probe.strip():
            probe = f.readline()
        f.seek(pos)
        if probe.count(b"\t") == 3:
            try:
                return cls._parse_arrow(root, f)
            except Exception:  # noqa: BLE001 - the plain parser names the bad line
                f.seek(pos)
        return cls._parse_plain(root, f.read().decode("utf-8"), source)

    @classmethod
    def _parse_arrow(cls, root: str, f) -> Manifest:
        """Stream the rows in 16 MB blocks, each block's columns copied into the numpy columns and
        freed: the peak is about the columns themselves."""
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyarrow import csv

        pos = f.tell()
        f.seek(0, 2)
        size = max(f.tell() - pos, 0)
        f.seek(pos)
        reader = csv.open_csv(
            f, read_options=csv.ReadOptions(column_names=["path", "n", "lang", "dataset"],
                                            block_size=16 << 20),
            parse_options=csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                           double_quote=False, newlines_in_values=False),
            convert_options=csv.ConvertOptions(column_types={
                "path": pa.string(), "n": pa.int64(), "lang": pa.string(), "dataset": pa.string()},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        # Columns are filled in place in buffers sized from the file (a row takes >= 8 bytes):
        # pages never written are never backed by memory, so only the rows' bytes count.
        cap = size // 8 + 1
        blob = np.empty(size, dtype=np.uint8)
        lens = np.empty(cap, dtype=np.int32)
        n = np.empty(cap, dtype=np.int64)
        ids = {"lang": np.empty(cap, dtype=np.int32), "dataset": np.empty(cap, dtype=np.int32)}
        names: dict[str, dict[str, int]] = {"lang": {}, "dataset": {}}
        rows = nbytes = 0
        for batch in reader:
            k = len(batch)
            p = batch.column(0)
            o = np.frombuffer(p.buffers()[1], dtype=np.int32)[p.offset:p.offset + k + 1]
            blob[nbytes:nbytes + o[-1] - o[0]] = np.frombuffer(p.buffers()[2], dtype=np.uint8)[o[0]:o[-1]]
            nbytes += int(o[-1] - o[0])
            lens[rows:rows + k] = np.diff(o)
            n[rows:rows + k] = batch.column(1).to_numpy()
            for name, col in (("lang", batch.column(2)), ("dataset", batch.column(3))):
                enc = pc.dictionary_encode(col)
                table = np.array([names[name].setdefault(v, len(names[name]))
                                  for v in enc.dictionary.to_pylist()], dtype=np.int32)
                if k:
                    ids[name][rows:rows + k] = table[enc.indices.to_numpy()]
            rows += k
        del reader
        n, blob = n[:rows], blob[:nbytes]
        if (n < 0).any():
            raise ValueError("negative n_samples")
        off = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(lens[:rows], out=off[1:])
        del lens
        cols = [(ids[k][:rows], list(names[k])) for k in ("lang", "dataset")]
        pa.default_memory_pool().release_unused()
        m = cls.__new__(cls)
        m._set(root, blob, off, n, *cols[0], *cols[1])
        return m.compact()

    @classmethod
    def _parse_plain(cls, root: str, body: str, source: str) -> Manifest:
        paths, ns, langs, datasets = [], [], [], []
        for no, ln in enumerate(body.splitlines(), start=2):
            if not ln.strip():
                continue
            cols = ln.split("\t")
            if len(cols) not in (2, 4):
                raise BadInput(f"{source}:{no}: expected 2 or 4 tab-separated columns, got {len(cols)}")
            try:
                n = int(cols[1])
            except ValueError as e:
                raise BadInput(f"{source}:{no}: n_samples {cols[1]!r} is not an integer") from e
            if n < 0:
                raise BadInput(f"{source}:{no}: negative n_samples {n}")
            lang, dataset = (cols[2], cols[3]) if len(cols) == 4 else lang_dataset_from_path(cols[0])
            paths.append(cols[0])
            ns.append(n)
            langs.append(lang)
            datasets.append(dataset)
        return cls.from_columns(root, paths, np.array(ns, dtype=np.int64), langs, datasets)

    @classmethod
    def read(cls, url: str) -> Manifest:
        """Read a manifest file, or ``<dir>/manifest.tsv`` when ``url`` is a directory."""
        fs, path = storage.get_fs(url)
        if fs.isdir(path):
            url = storage.join(url, MANIFEST)
            path = storage.get_fs(url)[1]
        try:
            with fs.open(path, "rb") as f:
                return cls._parse(f, url)
        except FileNotFoundError as e:
            raise BadInput(f"manifest not found: {url}") from e
        except UnicodeDecodeError:
            raise BadInput(f"{url}: not a manifest TSV (not UTF-8 text; an audio file?): a manifest is a "
                           "root line, then path<TAB>n_samples[<TAB>lang<TAB>dataset] rows") from None

    def write(self, url: str) -> None:
        """Atomically write the text form to ``url``."""
        with storage.atomic_open(url) as f:
            for chunk in self._lines():
                f.write(chunk.encode("utf-8"))

    # -- queries -------------------------------------------------------------------------------
    def url_of(self, i: int) -> str:
        p = self.path(int(i))
        return storage.join(self.root, p) if self.root else p

    @property
    def languages(self) -> list[str]:
        return [self.lang_names[i] for i in np.unique(self.lang_ids)]

    @property
    def datasets(self) -> list[str]:
        return [self.dataset_names[i] for i in np.unique(self.dataset_ids)]

    def group_ids(self) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(int32 group id of every utterance, the (lang, dataset) of each group, sorted)."""
        nd = max(len(self.dataset_names), 1)
        code = self.lang_ids.astype(np.int64) * nd + self.dataset_ids
        present = np.flatnonzero(np.bincount(code, minlength=max(len(self.lang_names), 1) * nd))
        remap = np.full(max(len(self.lang_names), 1) * nd, -1, dtype=np.int32)
        remap[present] = np.arange(len(present), dtype=np.int32)
        keys = [(self.lang_names[int(c) // nd], self.dataset_names[int(c) % nd]) for c in present]
        return remap[code], keys

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(lang, dataset) of every utterance, in order (what TwoLevelSampler takes)."""
        gid, keys = self.group_ids()
        return [keys[g] for g in gid.tolist()]

    def counts(self, by: str = "utterances") -> dict[tuple[str, str], float]:
        """Utterances or hours per (lang, dataset)."""
        if by not in ("utterances", "hours"):
            raise BadInput(f"counts(by=...) must be 'utterances' or 'hours', got {by!r}")
        gid, keys = self.group_ids()
        w = None if by == "utterances" else self.n_samples / SAMPLE_RATE / 3600
        c = np.bincount(gid, weights=w, minlength=len(keys))
        return {k: float(v) for k, v in zip(keys, c, strict=True)}

    def select(self, indices: Iterable[int]) -> Manifest:
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"select: index out of range ({len(self)} utterances)")
        idx = np.where(idx < 0, idx + len(self), idx)
        m = Manifest.__new__(Manifest)
        m._set(self.root, *_gather(self._blob, self._off, idx), self.n_samples[idx],
               self.lang_ids[idx], self.lang_names, self.dataset_ids[idx], self.dataset_names)
        return m.compact()

    def stats(self) -> dict:
        """Utterances and hours per language, per dataset, per (lang, dataset), and totals."""
        hours = self.n_samples / SAMPLE_RATE / 3600

        def agg(ids: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
            u = np.bincount(ids, minlength=len(names))
            h = np.bincount(ids, weights=hours, minlength=len(names))
            return dict(sorted((names[i], {"utterances": int(u[i]), "hours": float(h[i])})
                               for i in range(len(names)) if u[i]))

        gid, keys = self.group_ids()
        return {
            "languages": agg(self.lang_ids, self.lang_names),
            "datasets": agg(self.dataset_ids, self.dataset_names),
            "lang_dataset": agg(gid, [f"{a}/{b}" for a, b in keys]),
            "total": {"utterances": len(self), "hours": float(hours.sum())},
        }


def lang_dataset_from_path(path: str) -> tuple[str, str]:
    """``<dataset>/<lang>/<file>`` (possibly deeper) -> (lang, dataset)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        raise BadInput(f"cannot infer lang/dataset from {path!r}: expected <dataset>/<lang>/<file>")
    return parts[-2], parts[-3]
