"""The labels format, read by training, LID and evaluation and written by the clustering stage.

A labels directory holds, per shard, ``shard-XXXXX-of-YYYYY.km`` (fairseq text: one line of
space-separated ids per utterance, manifest order), ``.npz`` (``labels`` uint16 flat + ``lengths``
int64) and a ``.done`` JSON marker written last (the stage's info plus ``files``: size and sha256 of the
shard's ``.km`` and ``.npz``, checked by :meth:`Labels.read_shard`); after the merge ``labels.km``,
``labels.npy`` (uint16, every frame), ``offsets.npy`` (int64, N+1), ``dict.km.txt`` (K lines ``i 1``:
fairseq's dictionary, which adds 4 specials) and ``_SUCCESS``, whose info holds ``label_rate``,
``num_clusters``, ``num_utterances``, ``num_frames`` and ``label_method``.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np

from mhubert import storage
from mhubert.artifacts.base import Artifact
from mhubert.artifacts.marker import CorruptArtifact, FileRecord
from mhubert.errors import BadInput

MAX_CLUSTERS = 65535  # uint16 labels


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def km_lines(labels: list[np.ndarray]) -> str:
    """fairseq ``.km`` text: one line of space-separated ids per utterance."""
    return "".join(" ".join(map(str, lab.tolist())) + "\n" for lab in labels)


def dictionary_text(num_clusters: int) -> str:
    """fairseq ``dict.km.txt``: one ``i 1`` line per cluster."""
    return "".join(f"{i} 1\n" for i in range(num_clusters))


class Labels(Artifact):
    """Frame labels of every utterance of a manifest (see the module docstring for the files)."""

    kind: ClassVar[str] = "labels"
    REQUIRED = ("labels.npy", "offsets.npy", "dict.km.txt")
    HINT = "run `mhubert cluster assign` for every shard, then `mhubert cluster merge`"

    # -- shards ----------------------------------------------------------------------------------
    def shard_url(self, shard: int, num_shards: int, suffix: str) -> str:
        return self.path(shard_name(shard, num_shards) + suffix)

    def shard_done(self, shard: int, num_shards: int) -> dict | None:
        """The shard's ``.done`` info, or None when the shard has not finished."""
        url = self.shard_url(shard, num_shards, ".done")
        return storage.read_json(url) if storage.exists(url) else None

    def write_shard(self, shard: int, num_shards: int, labels: list[np.ndarray], info: dict) -> dict:
        """Publish one shard: ``.km``, ``.npz``, then ``.done`` (JSON ``info`` + the files' records)
        last. Returns what ``.done`` holds."""
        lengths = np.asarray([len(x) for x in labels], dtype=np.int64)
        flat = np.concatenate(labels).astype(np.uint16) if labels else np.zeros(0, dtype=np.uint16)
        buf = io.BytesIO()
        np.savez(buf, labels=flat, lengths=lengths)
        km = km_lines(labels).encode("utf-8")
        npz = buf.getvalue()
        name = shard_name(shard, num_shards)
        storage.atomic_write(self.shard_url(shard, num_shards, ".km"), km)
        storage.atomic_write(self.shard_url(shard, num_shards, ".npz"), npz)
        done = {**info, "files": {name + ".km": FileRecord.of_bytes(km).to_dict(),
                                  name + ".npz": FileRecord.of_bytes(npz).to_dict()}}
        storage.atomic_write_json(self.shard_url(shard, num_shards, ".done"), done)
        return done

    def read_shard(self, shard: int, num_shards: int, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(flat uint16 labels, lengths int64) of one finished shard; with ``verify`` the ``.npz``
        is checked against the size and sha256 its ``.done`` recorded (:class:`CorruptArtifact`)."""
        url = self.shard_url(shard, num_shards, ".npz")
        data = storage.read_bytes(url)
        if verify:
            done = self.shard_done(shard, num_shards) or {}
            want = (done.get("files") or {}).get(shard_name(shard, num_shards) + ".npz")
            if want is not None:
                got = FileRecord.of_bytes(data)
                if got != FileRecord(int(want["size"]), str(want["sha256"])):
                    raise CorruptArtifact(f"{url} ({got.size} bytes) does not match the size and sha256 "
                                          "its .done recorded: corrupt or changed; rerun `mhubert "
                                          f"cluster assign --shard {shard}` after removing its .done")
        try:
            z = np.load(io.BytesIO(data))
            return z["labels"], z["lengths"]
        except (ValueError, OSError, KeyError) as e:
            raise BadInput(f"{url} is not a readable labels shard: {e}") from e

    # -- merged ----------------------------------------------------------------------------------
    @property
    def label_rate(self) -> int:
        return int(self.info["label_rate"])

    @property
    def num_clusters(self) -> int:
        return int(self.info["num_clusters"])

    def read(self, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(flat uint16 labels, offsets int64 (N+1,)); utterance i has ``flat[offsets[i]:offsets[i+1]]``.
        Local files are memory-mapped. ``verify`` (the default: one sha256 pass, small next to a
        training run) checks both files' sizes and digests against the marker first."""
        if verify:
            self.verify(["labels.npy", "offsets.npy"])
        else:
            self.marker()
        out = []
        for f in ("labels.npy", "offsets.npy"):
            url = self.path(f)
            p = storage.local_path(url)
            try:
                out.append(np.load(p, mmap_mode="r") if p is not None
                           else np.load(io.BytesIO(storage.read_bytes(url))))
            except (ValueError, OSError) as e:
                raise BadInput(f"{url} is not a readable .npy array: {e}") from e
        flat, offsets = out
        if offsets.size == 0 or int(offsets[-1]) != flat.size:
            raise BadInput(f"{self.url}: offsets end at {int(offsets[-1]) if offsets.size else 0} "
                           f"but there are {flat.size} labels")
        return flat, np.asarray(offsets, dtype=np.int64)
