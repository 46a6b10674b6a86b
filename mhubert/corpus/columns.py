"""Columnar building blocks of the import path: what 30 million rows cost is their columns.

:class:`KeySet` holds a large set of names (a release's audio listing) or a name -> int map (its
duration table) as two sorted 64-bit hash columns, 16 bytes a key, instead of Python strings in a
``set``/``dict`` (about 150 bytes a key). Two independent hashes make a false match about 2^-128 per
lookup. :class:`RowColumns` accumulates the rows a reader yields: paths as one UTF-8 buffer with
offsets, language codes, datasets and speakers as small-integer ids into name tables, durations as
int64 (-1: none), and the transcripts spooled to a local temporary file (read back in order when
``utterances.tsv`` is written). Rows a reader already rejects go to a reject spool at once. Nothing
here keeps a Python object per row. Hand-written because neither numpy nor pyarrow offers an
appendable string column or a compact hashed set of strings with per-key lookups.
"""

from __future__ import annotations

import hashlib
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

CHUNK = 1 << 16  # rows per packed chunk


def _h2(key: str) -> tuple[int, int]:
    """Two 64-bit hashes of ``key`` (the process's str hash, and blake2b's: independent)."""
    return hash(key), int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(),
                                     "little", signed=True)


class KeySet:
    """``key in ks`` and ``ks.get(key)`` for many string keys, in 16 bytes (24 with values) a key."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        a, b = array("q"), array("q")
        for k in keys:
            x, y = _h2(k)
            a.append(x)
            b.append(y)
        self._set(np.frombuffer(a, dtype=np.int64), np.frombuffer(b, dtype=np.int64), None)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, int]]) -> KeySet:
        ks = cls.__new__(cls)
        a, b, v = array("q"), array("q"), array("q")
        for k, val in pairs:
            x, y = _h2(k)
            a.append(x)
            b.append(y)
            v.append(int(val))
        ks._set(np.frombuffer(a, dtype=np.int64), np.frombuffer(b, dtype=np.int64),
                np.frombuffer(v, dtype=np.int64))
        return ks

    def _set(self, a: np.ndarray, b: np.ndarray, v: np.ndarray | None) -> None:
        order = np.lexsort((b, a))
        self._a, self._b = a[order], b[order]
        self._v = v[order] if v is not None else None

    def __len__(self) -> int:
        return len(self._a)

    def _find(self, key: str) -> int:
        x, y = _h2(key)
        i = int(np.searchsorted(self._a, x))
        while i < len(self._a) and self._a[i] == x:
            if self._b[i] == y:
                return i
            i += 1
        return -1

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) >= 0

    def get(self, key: str, default: int | None = None) -> int | None:
        i = self._find(key)
        if i < 0 or self._v is None:
            return default
        return int(self._v[i])


class _Names:
    """Strings as small-integer ids (languages, datasets, speakers)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []

    def id(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            i = self.ids[s] = len(self.names)
            self.names.append(s)
        return i


class RowColumns:
    """The rows of an import, as columns (see the module docstring). ``append`` each row a reader
    yields; rejected rows go to :attr:`rejects` (a :class:`RejectSpool`) and are not stored."""

    def __init__(self, rejects: RejectSpool) -> None:
        self.rejects = rejects
        self.langs, self.datasets, self.speakers = _Names(), _Names(), _Names()
        self._blobs: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []
        self._cur: list[bytes] = []
        self._lang, self._ds, self._spk = array("i"), array("i"), array("i")
        self._n = array("q")
        self._hash = array("q")
        self._text = tempfile.TemporaryFile(prefix="mhubert-import-text-")
        self._text_off = array("q", [0])
        self._text_pos = 0

    def append(self, path: str, source_lang: str, dataset: str, speaker: str, text: str,
               n_samples: int | None, reject: str | None) -> None:
        if reject is not None:
            self.rejects.add(path, reject)
            return
        self._cur.append(path.encode("utf-8"))
        self._hash.append(hash(path))
        self._lang.append(self.langs.id(source_lang))
        self._ds.append(self.datasets.id(dataset))
        self._spk.append(self.speakers.id(speaker))
        self._n.append(-1 if n_samples is None else int(n_samples))
        t = text.replace("\t", " ").replace("\r", " ").replace("\n", " ").encode("utf-8") if text else b""
        if t:
            self._text.write(t)
            self._text_pos += len(t)
        self._text_off.append(self._text_pos)
        if len(self._cur) >= CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self._cur:
            self._lens.append(np.fromiter(map(len, self._cur), dtype=np.int32, count=len(self._cur)))
            self._blobs.append(np.frombuffer(b"".join(self._cur), dtype=np.uint8))
            self._cur = []

    def __len__(self) -> int:
        return len(self._n)

    # -- columns (after the last append) ---------------------------------------------------------
    def finish(self) -> None:
        self._pack()
        self.n_samples = np.frombuffer(self._n, dtype=np.int64)
        self.lang_ids = np.frombuffer(self._lang, dtype=np.int32)
        self.dataset_ids = np.frombuffer(self._ds, dtype=np.int32)
        self.speaker_ids = np.frombuffer(self._spk, dtype=np.int32)
        self.hashes = np.frombuffer(self._hash, dtype=np.int64)
        self.text_off = np.frombuffer(self._text_off, dtype=np.int64)
        self._chunk_rows = np.cumsum([0] + [len(x) for x in self._lens])
        self._off = np.zeros(int(self._chunk_rows[-1]) + 1, dtype=np.int64)
        for c, ln in enumerate(self._lens):
            np.cumsum(ln, out=self._off[self._chunk_rows[c] + 1:self._chunk_rows[c + 1] + 1])
            self._off[self._chunk_rows[c] + 1:self._chunk_rows[c + 1] + 1] += self._off[self._chunk_rows[c]]
        self._lens = []
        self._text.flush()

    def drop_hashes(self) -> None:
        """Free the path hashes (once duplicates are found)."""
        self.hashes = np.zeros(0, dtype=np.int64)
        self._hash = array("q")

    def path(self, i: int) -> str:
        c = int(np.searchsorted(self._chunk_rows, i, side="right")) - 1
        base = self._off[self._chunk_rows[c]]
        return bytes(self._blobs[c][self._off[i] - base:self._off[i + 1] - base]).decode("utf-8")

    def take_paths(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The UTF-8 buffer and offsets of the paths ``idx`` (increasing), the packed chunks freed
        as they are passed: the peak is about one copy of the paths. Call once, last."""
        lens = (self._off[idx + 1] - self._off[idx]).astype(np.int64)
        off = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        out = np.empty(int(off[-1]), dtype=np.uint8)
        pos = 0
        for c in range(len(self._blobs)):
            lo, hi = self._chunk_rows[c], self._chunk_rows[c + 1]
            a, b = np.searchsorted(idx, lo), np.searchsorted(idx, hi)
            blob, base = self._blobs[c], self._off[lo]
            sel = idx[a:b]
            if len(sel):
                starts = self._off[sel] - base
                ln = lens[a:b]
                src = np.repeat(starts - (off[a:b] - off[a]), ln) + np.arange(int(ln.sum()), dtype=np.int64)
                out[pos:pos + int(ln.sum())] = blob[src]
                pos += int(ln.sum())
            self._blobs[c] = np.zeros(0, dtype=np.uint8)
        return out, off

    def texts(self, idx: np.ndarray) -> Iterator[str]:
        """The transcripts of rows ``idx`` (increasing), read back from the spool in order."""
        f = self._text
        for a in range(0, len(idx), CHUNK):
            sel = idx[a:a + CHUNK]
            lo, hi = int(self.text_off[sel[0]]), int(self.text_off[sel[-1] + 1])
            f.seek(lo)
            raw = f.read(hi - lo)
            starts, ends = (self.text_off[sel] - lo).tolist(), (self.text_off[sel + 1] - lo).tolist()
            for s, e in zip(starts, ends, strict=True):
                yield raw[s:e].decode("utf-8")

    def close(self) -> None:
        self._text.close()


class RejectSpool:
    """``rejects.tsv`` rows as they come, in a local temporary file, with counts per reason kind."""

    def __init__(self) -> None:
        self._f = tempfile.TemporaryFile(prefix="mhubert-import-rejects-")
        self.count = 0
        self.kinds: Counter[str] = Counter()

    def __len__(self) -> int:
        return self.count

    def add(self, path: str, reason: str) -> None:
        p, r = (str(x or "").replace("\t", " ").replace("\r", " ").replace("\n", " ") for x in (path, reason))
        self._f.write(f"{p}\t{r}\n".encode())
        self.count += 1
        self.kinds[reason.split(":", 1)[0].strip() or reason] += 1

    def lines(self) -> Iterator[bytes]:
        """The spooled lines (bytes, newline-terminated), from the start."""
        self._f.flush()
        self._f.seek(0)
        while chunk := self._f.read(1 << 22):
            yield chunk
        self._f.seek(0, 2)

    def read(self, limit: int | None = None) -> list[tuple[str, str]]:
        """The rejects as ``(path, reason)`` (at most ``limit``)."""
        out: list[tuple[str, str]] = []
        self._f.flush()
        self._f.seek(0)
        for line in self._f:
            if limit is not None and len(out) >= limit:
                break
            p, _, r = line.decode("utf-8").rstrip("\n").partition("\t")
            out.append((p, r))
        self._f.seek(0, 2)
        return out

    def close(self) -> None:
        self._f.close()
