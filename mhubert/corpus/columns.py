"""Columnar building blocks of the import path: what 30 million rows cost is their columns.

:class:`KeySet` holds a large set of names (a release's audio listing) or a name -> int map (its
duration table) as two sorted 64-bit hash columns, 16 bytes a key, instead of Python strings in a
``set``/``dict`` (about 150 bytes a key); two hashes make a false match about 2^-128 per lookup.
:class:`RowColumns` accumulates the rows a reader yields: paths as UTF-8 buffers with offsets,
language codes and datasets as small-integer ids into name tables, durations as int32 (-1: none),
and speakers and transcripts spooled to a local temporary file (read back in order when
``utterances.tsv`` is written). Rows a reader already rejects go to a reject spool at once. Nothing
here keeps a Python object per row. Hand-written because neither numpy nor pyarrow offers an
appendable string column or a compact hashed set of strings with per-key lookups.
"""

from __future__ import annotations

import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

CHUNK = 1 << 16  # rows per packed chunk


def _h2(key: str) -> tuple[int, int]:
    """Two 64-bit hashes of ``key``: the process's (keyed SipHash) of the key and of the key
    reversed, independent but for palindromes."""
    return hash(key), hash(key[::-1])


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


def _offsets(parts: list[bytes]) -> np.ndarray:
    """Offsets (k + 1) of ``parts`` joined: int32 unless the chunk passes 2 GiB."""
    off = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=off[1:])
    return off.astype(np.int32) if off[-1] < 2**31 else off


def _clean(s: str) -> str:
    return s.replace("\t", " ").replace("\r", " ").replace("\n", " ") if s else ""


class RowColumns:
    """The rows of an import, as columns (see the module docstring). ``append`` each row a reader
    yields; rejected rows go to :attr:`rejects` (a :class:`RejectSpool`) and are not stored.

    Per row: the path's bytes (one buffer), 4 bytes of path offset, 4 of spool offset, 4 each for
    the duration, the language and the dataset id (and an 8-byte path hash until
    :meth:`drop_hashes`). Rows are packed in chunks of :data:`CHUNK`; speaker and transcript go to
    the spool as ``speaker<TAB>text``."""

    def __init__(self, rejects: RejectSpool) -> None:
        self.rejects = rejects
        self.langs, self.datasets = _Names(), _Names()
        self._buf = bytearray()  # every path, grown in place (large reallocations move pages)
        self._pbase = [0]
        self._poff: list[np.ndarray] = []
        self._soff: list[np.ndarray] = []
        self._sbase = [0]
        self._cur: list[bytes] = []
        self._rec: list[bytes] = []
        self._lang, self._ds, self._n = array("i"), array("i"), array("i")
        self._hash = array("q")
        self._spool = tempfile.TemporaryFile(prefix="mhubert-import-text-")
        self._rows: int | None = None

    def append(self, path: str, source_lang: str, dataset: str, speaker: str, text: str,
               n_samples: int | None, reject: str | None) -> None:
        if reject is not None:
            self.rejects.add(path, reject)
            return
        self._cur.append(path.encode("utf-8"))
        self._rec.append(f"{_clean(speaker)}\t{_clean(text)}".encode())
        self._hash.append(hash(path))
        self._lang.append(self.langs.id(source_lang))
        self._ds.append(self.datasets.id(dataset))
        self._n.append(-1 if n_samples is None else min(int(n_samples), 2**31 - 1))
        if len(self._cur) >= CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self._cur:
            self._poff.append(_offsets(self._cur))
            self._buf += b"".join(self._cur)
            self._pbase.append(len(self._buf))
            self._soff.append(_offsets(self._rec))
            recs = b"".join(self._rec)
            self._spool.write(recs)
            self._sbase.append(self._sbase[-1] + len(recs))
            self._cur, self._rec = [], []

    def __len__(self) -> int:
        return self._rows if self._rows is not None else len(self._n)

    # -- columns (after the last append) ---------------------------------------------------------
    def finish(self) -> None:
        self._pack()
        self._spool.flush()
        self._rows = len(self._n)
        self.n_samples = np.frombuffer(self._n, dtype=np.int32)
        self.lang_ids = np.frombuffer(self._lang, dtype=np.int32)
        self.dataset_ids = np.frombuffer(self._ds, dtype=np.int32)
        self.hashes = np.frombuffer(self._hash, dtype=np.int64)

    def drop_hashes(self) -> None:
        """Free the path hashes (once duplicates are found)."""
        self.hashes = np.zeros(0, dtype=np.int64)
        self._hash = array("q")

    def drop_columns(self) -> None:
        """Free the duration, language and dataset columns (once the kept rows' are taken)."""
        self.n_samples = self.lang_ids = self.dataset_ids = np.zeros(0, dtype=np.int32)
        self._n, self._lang, self._ds = array("i"), array("i"), array("i")

    def path(self, i: int) -> str:
        c, j = divmod(int(i), CHUNK)
        o, base = self._poff[c], self._pbase[c]
        return self._buf[base + int(o[j]):base + int(o[j + 1])].decode("utf-8")

    def _by_chunk(self, idx: np.ndarray) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """(chunk, first and end position in ``idx``, rows within the chunk) of increasing ``idx``."""
        bounds = np.searchsorted(idx, np.arange(len(self._poff) + 1, dtype=np.int64) * CHUNK)
        for c in range(len(self._poff)):
            a, b = int(bounds[c]), int(bounds[c + 1])
            if b > a:
                yield c, a, b, idx[a:b] - c * CHUNK

    def take_paths(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The UTF-8 buffer and offsets of the paths ``idx`` (increasing), compacted in place in
        the paths' own buffer (kept rows move towards the start, chunk by chunk): no second copy
        of the paths. Call once, last: :meth:`path` is no longer valid after it."""
        off = np.zeros(len(idx) + 1, dtype=np.int64)
        for c, a, b, j in self._by_chunk(idx):
            o = self._poff[c].astype(np.int64)
            off[a + 1:b + 1] = o[j + 1] - o[j]
        np.cumsum(off, out=off)
        view = np.frombuffer(self._buf, dtype=np.uint8)
        for c, a, b, j in self._by_chunk(idx):
            o = self._poff[c].astype(np.int64) + self._pbase[c]
            ln = o[j + 1] - o[j]
            lo, hi = int(off[a]), int(off[b])
            src = np.repeat(o[j] - (off[a:b] - lo), ln) + np.arange(hi - lo, dtype=np.int64)
            view[lo:hi] = view[src]  # src >= destination: read before written
        del view
        del self._buf[int(off[-1]):]
        return np.frombuffer(self._buf, dtype=np.uint8), off

    def records(self, idx: np.ndarray) -> Iterator[tuple[str, str]]:
        """(speaker, transcript) of rows ``idx`` (increasing), read back from the spool in order."""
        f = self._spool
        for c, _, _, j in self._by_chunk(idx):
            o = self._soff[c]
            lo, hi = int(o[j[0]]), int(o[j[-1] + 1])
            f.seek(self._sbase[c] + lo)
            raw = f.read(hi - lo)
            for s, e in zip((o[j] - lo).tolist(), (o[j + 1] - lo).tolist(), strict=True):
                spk, _, text = raw[s:e].decode("utf-8").partition("\t")
                yield spk, text

    def close(self) -> None:
        self._spool.close()


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
