"""The base of every run object: a directory URL, its files, and its commit marker."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from mhubert import storage
from mhubert.artifacts import marker as mk
from mhubert.artifacts.marker import FileRecord, Marker
from mhubert.errors import BadInput


class Artifact:
    """A directory of results that is trusted only once committed.

    Subclasses name their ``kind``, the files a committed one must hold (``REQUIRED``) and what its
    marker leaves out (``EXCLUDE``: e.g. a training run's checkpoints, which carry their own
    records). Writers go through :meth:`write_bytes` / :meth:`write_json` / :meth:`write_text`,
    which are atomic and remember each file's size and sha256, then :meth:`commit`.
    """

    kind: ClassVar[str] = "artifact"
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    EXCLUDE: ClassVar[tuple[str, ...]] = ()
    HINT: ClassVar[str] = ""      # how to produce it, for the "not committed" message

    def __init__(self, url: str) -> None:
        if not url:
            raise BadInput(f"empty URL for a {self.kind} artifact")
        self.url = url.rstrip("/")
        self._records: dict[str, FileRecord] = {}
        self._marker: Marker | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.url == self.url  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.url))

    def path(self, *names: str) -> str:
        """URL of a file or folder inside the artifact."""
        return storage.join(self.url, *names)

    # -- reading -------------------------------------------------------------------------------
    @property
    def marker_url(self) -> str:
        return self.path(mk.MARKER)

    def is_committed(self) -> bool:
        return storage.exists(self.marker_url)

    def marker(self, refresh: bool = False) -> Marker:
        """The committed marker; a clear error when there is none."""
        if self._marker is None or refresh:
            m = mk.read(self.url)
            if m is None:
                hint = f" ({self.HINT})" if self.HINT else ""
                raise BadInput(f"no committed {self.kind} at {self.url}{hint}")
            if m.kind != self.kind:
                raise BadInput(f"{self.url} holds a {m.kind} artifact, not a {self.kind}")
            self._marker = m
        return self._marker

    @property
    def info(self) -> dict[str, Any]:
        """The stage's figures recorded in the marker."""
        return self.marker().info

    @property
    def fingerprint(self) -> str | None:
        return self.marker().fingerprint

    def verify(self, names: list[str] | None = None, digest: bool = True) -> Marker:
        """Check files against the marker (all, or ``names``); :class:`CorruptArtifact` otherwise."""
        m = self.marker()
        mk.verify(self.url, m, names, digest)
        return m

    def read_bytes(self, name: str, verify: bool | None = None) -> bytes:
        """A file's bytes, checked (size and sha256: cheap, the bytes are in memory) against the
        marker. ``verify=None`` (the default) checks whenever the artifact is committed with a marker
        that lists ``name``; ``True`` requires that; ``False`` skips the check (e.g. while writing)."""
        data = storage.read_bytes(self.path(name))
        if verify is False:
            return data
        want = self._recorded(name, required=bool(verify))
        if want is not None:
            self._check(name, FileRecord.of_bytes(data), want)
        return data

    def fetch(self, name: str, local_path: str, verify: bool = True) -> str:
        """A local file holding ``name`` (downloaded to ``local_path`` unless the artifact is
        already local), checked against the marker: for readers that need a path (faiss, torch)."""
        url = self.path(name)
        path = storage.local_path(url)
        if path is None:
            path = storage.download_file(url, local_path)
        if verify:
            want = self._recorded(name, required=True)
            self._check(name, mk.hash_url(path), want)
        return path

    def _recorded(self, name: str, required: bool) -> FileRecord | None:
        """The marker's record of ``name``; None when it cannot be checked and ``required`` is
        false (not committed, an older free-form marker, or a file the marker does not list)."""
        try:
            m = self.marker() if required or self._marker is not None or self.is_committed() else None
        except BadInput:
            if required:
                raise
            return None
        want = m.files.get(name) if m is not None else None
        if want is None and required:
            raise mk.CorruptArtifact(f"{self.path(name)} is not part of the committed {self.kind}")
        return want

    def _check(self, name: str, got: FileRecord, want: FileRecord) -> None:
        if got == want:
            return
        fresh = self.marker(refresh=True).files.get(name)  # recommitted since it was cached?
        if fresh is not None and got == fresh:
            return
        if got.size != want.size:
            raise mk.CorruptArtifact(f"{self.path(name)} has {got.size} bytes, its marker recorded "
                                     f"{want.size}: truncated or changed after it was committed")
        raise mk.CorruptArtifact(f"{self.path(name)} does not match the sha256 its marker recorded: "
                                 "corrupt or changed after it was committed")

    def read_json(self, name: str, verify: bool | None = None) -> Any:
        try:
            return json.loads(self.read_bytes(name, verify))
        except json.JSONDecodeError as e:
            raise BadInput(f"{self.path(name)} is not valid JSON: {e}") from e

    # -- writing -------------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> FileRecord:
        storage.atomic_write(self.path(name), data)
        rec = self._records[name] = FileRecord.of_bytes(data)
        return rec

    def write_text(self, name: str, text: str) -> FileRecord:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj: Any) -> FileRecord:
        return self.write_text(name, json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def record(self, name: str, rec: FileRecord) -> None:
        """Remember the record of a file written another way (streamed, uploaded)."""
        self._records[name] = rec

    def uncommit(self) -> None:
        """Remove the marker (before rewriting a committed artifact in place)."""
        storage.remove(self.marker_url)
        self._marker = None

    def commit(self, info: dict[str, Any] | None = None, *, settings: dict[str, Any] | None = None,
               inputs: dict[str, str | None] | None = None) -> Marker:
        """Write the marker last: every file with its size and sha256, ``info``, and the fingerprint
        of ``settings`` + ``inputs`` (input artifacts' fingerprints)."""
        missing = [n for n in self.REQUIRED if not storage.exists(self.path(n))]
        if missing:
            raise BadInput(f"cannot commit {self.kind} at {self.url}: missing {', '.join(missing)}")
        m = Marker(kind=self.kind, info=dict(info or {}), settings=dict(settings or {}),
                   inputs=dict(inputs or {}))
        self._marker = mk.write(self.url, m, self._records, self.EXCLUDE)
        return self._marker
