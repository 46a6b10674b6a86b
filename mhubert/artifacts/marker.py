"""Commit markers: what makes a directory of results an artifact.

A stage writes its files first and its marker ``_SUCCESS`` last. The marker is JSON::

    {"kind": "labels", "version": "0.1.0", "created": "2026-12-01T08:00:00+00:00",
     "info": {...the stage's figures...},
     "files": {"labels.npy": {"size": 123, "sha256": "..."}, ...},
     "settings": {...what produced it...}, "inputs": {"manifest": "<fingerprint>", ...},
     "fingerprint": "<sha256 of kind, settings, inputs and version>"}

``files`` lists every file of the artifact (nested artifacts, which carry their own marker, are not
repeated), so a reader can check sizes and digests before it uses the bytes (:func:`verify`).
``fingerprint`` identifies what produced the artifact: a run whose stage settings and inputs give the
same fingerprint may reuse it, any other must not (the no-stale-results rule).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from mhubert import __version__, storage
from mhubert.errors import BadInput

MARKER = storage.SUCCESS
HASH_CHUNK = 1 << 22


class CorruptArtifact(BadInput):
    """An artifact's bytes differ from what its marker recorded (size or sha256)."""


@dataclass(frozen=True)
class FileRecord:
    """Size in bytes and sha256 hex digest of one file."""

    size: int
    sha256: str

    @classmethod
    def of_bytes(cls, data: bytes) -> FileRecord:
        return cls(len(data), hashlib.sha256(data).hexdigest())

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


def hash_url(url: str) -> FileRecord:
    """Stream ``url`` through sha256 (never holds the whole object in memory); a read cut by a
    transient storage error starts over (``storage.call``)."""
    fs, path = storage.get_fs(url)

    def stream() -> FileRecord:
        h, size = hashlib.sha256(), 0
        with fs.open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
                size += len(chunk)
        return FileRecord(size, h.hexdigest())
    try:
        return storage.call(url, "read", stream)
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e


def fingerprint(kind: str, settings: dict[str, Any] | None, inputs: dict[str, str | None] | None,
                version: str = __version__) -> str:
    """sha256 of the canonical JSON of what produced an artifact."""
    doc = {"kind": kind, "settings": settings or {}, "inputs": inputs or {}, "version": version}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Marker:
    """The parsed ``_SUCCESS`` of an artifact."""

    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str | None] = field(default_factory=dict)
    version: str = __version__
    created: str = ""
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "created": self.created, "info": self.info,
                "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
                "settings": self.settings, "inputs": self.inputs, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Marker:
        if not isinstance(d, dict) or "kind" not in d or "files" not in d:
            raise BadInput(f"{where} is not an mhubert marker (written by another version?)")
        try:
            files = {k: FileRecord(int(v["size"]), str(v["sha256"])) for k, v in d["files"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: malformed file list: {e}") from e
        return cls(kind=str(d["kind"]), info=dict(d.get("info") or {}), files=files,
                   settings=dict(d.get("settings") or {}), inputs=dict(d.get("inputs") or {}),
                   version=str(d.get("version", "")), created=str(d.get("created", "")),
                   fingerprint=d.get("fingerprint"))


def _is_hidden(rel: str) -> bool:
    return any(p.startswith(".") for p in rel.split("/"))


def list_files(dir_url: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Relative paths of the files under ``dir_url`` that belong to its artifact: hidden/temporary
    files, the marker, ``exclude`` prefixes and nested artifacts (a folder with its own marker) are
    left out."""
    _, base = storage.get_fs(dir_url)
    base = base.rstrip("/")
    if not storage.isdir(dir_url):
        return []
    rels = []
    for p in storage.find(dir_url):
        rel = p[len(base):].lstrip("/")
        if rel and not _is_hidden(rel):
            rels.append(rel)
    nested = {posixpath.dirname(r) for r in rels if posixpath.basename(r) == MARKER and "/" in r}

    def inside_nested(rel: str) -> bool:
        return any(rel == n or rel.startswith(n + "/") for n in nested)

    return sorted(r for r in rels if r != MARKER and not inside_nested(r)
                  and not any(r == e.rstrip("/") or r.startswith(e.rstrip("/") + "/") for e in exclude))


def write(dir_url: str, marker: Marker, records: dict[str, FileRecord] | None = None,
          exclude: tuple[str, ...] = ()) -> Marker:
    """Commit ``dir_url``: list and hash its files (``records`` already known are not re-read), then
    write the marker last. Returns the marker as written."""
    records = dict(records or {})
    files = {rel: records.get(rel) or hash_url(storage.join(dir_url, rel))
             for rel in list_files(dir_url, exclude)}
    marker.files = files
    marker.created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if marker.fingerprint is None and (marker.settings or marker.inputs):
        marker.fingerprint = fingerprint(marker.kind, marker.settings, marker.inputs, marker.version)
    storage.atomic_write_json(storage.join(dir_url, MARKER), marker.to_dict())
    return marker


def read(dir_url: str) -> Marker | None:
    """The marker of ``dir_url``, or None when it is not committed."""
    url = storage.join(dir_url, MARKER)
    if not storage.exists(url):
        return None
    return Marker.from_dict(storage.read_json(url), url)


def verify(dir_url: str, marker: Marker, names: list[str] | None = None, digest: bool = True) -> None:
    """Check the listed files (all, or ``names``) against ``marker``: present, same size and, with
    ``digest``, same sha256. Raises :class:`CorruptArtifact` naming the first file that differs."""
    for rel in names if names is not None else sorted(marker.files):
        want = marker.files.get(rel)
        url = storage.join(dir_url, rel)
        if want is None:
            raise CorruptArtifact(f"{url} is not part of the committed {marker.kind} artifact")
        try:
            size = storage.size(url)
        except FileNotFoundError:
            raise CorruptArtifact(f"{url} is missing (listed in {dir_url}/{MARKER})") from None
        if size != want.size:
            raise CorruptArtifact(f"{url} has {size} bytes, its marker recorded {want.size}: "
                                  "the file was truncated or changed after it was committed")
        if digest and hash_url(url).sha256 != want.sha256:
            raise CorruptArtifact(f"{url} does not match the sha256 its marker recorded: "
                                  "the file is corrupt or was changed after it was committed")
