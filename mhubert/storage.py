"""fsspec URL helpers and atomic publishing.

Every path in this project is a URL: a plain path, ``file://``, ``s3://`` or ``memory://``.
S3 settings come from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

Atomicity: object stores have no rename, so a result is never written in place. ``atomic_write``
writes to a unique temporary key beside the target and then copies/moves it to the final key in one
put; directories of results are published by writing their parts first and a ``_SUCCESS`` marker
last (:func:`write_marker`). Readers trust a directory only when its marker exists.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from mhubert.errors import BadInput

SUCCESS = "_SUCCESS"


def _storage_options(url: str) -> dict[str, Any]:
    if url.startswith(("s3://", "s3a://")):
        opts: dict[str, Any] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
        if endpoint:
            opts["client_kwargs"] = {"endpoint_url": endpoint}
        return opts
    return {}


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a URL or plain path."""
    if not url:
        raise BadInput("empty path or URL")
    try:
        return url_to_fs(url, **_storage_options(url))
    except (ValueError, ImportError) as e:
        raise BadInput(f"unsupported storage URL {url!r}: {e}") from e


def join(url: str, *parts: str) -> str:
    """Join URL parts with '/' (keeps the protocol)."""
    out = url.rstrip("/")
    for p in parts:
        out = out + "/" + str(p).strip("/")
    return out


def parent(url: str) -> str:
    proto, sep, rest = url.partition("://")
    if not sep:
        return os.path.dirname(url.rstrip("/")) or "."
    return f"{proto}://{posixpath.dirname(rest.rstrip('/'))}"


def basename(url: str) -> str:
    return posixpath.basename(url.rstrip("/"))


def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return fs.exists(path)


def makedirs(url: str) -> None:
    fs, path = get_fs(url)
    fs.makedirs(path, exist_ok=True)


def listdir(url: str) -> list[str]:
    """Names (not paths) of the entries directly under ``url``; empty if it does not exist."""
    fs, path = get_fs(url)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def read_json(url: str) -> Any:
    try:
        return json.loads(read_text(url))
    except json.JSONDecodeError as e:
        raise BadInput(f"{url} is not valid JSON: {e}") from e


def remove(url: str, recursive: bool = False) -> None:
    fs, path = get_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def _tmp_key(path: str) -> str:
    d, name = posixpath.split(path)
    return posixpath.join(d, f".tmp-{name}-{uuid.uuid4().hex[:12]}")


def atomic_write(url: str, data: bytes) -> None:
    """Write ``data`` so that ``url`` either does not exist or holds all of it.

    Local files: write a temporary file in the same directory, fsync, ``os.replace``.
    Object stores: a single PUT is already all-or-nothing, but multipart uploads of large objects
    are staged at a temporary key and moved (server-side copy) once complete.
    """
    fs, path = get_fs(url)
    parent_dir = posixpath.dirname(path)
    if parent_dir:
        fs.makedirs(parent_dir, exist_ok=True)
    if fs.protocol in ("file", "local") or (isinstance(fs.protocol, tuple) and "file" in fs.protocol):
        tmp = _tmp_key(path)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    tmp = _tmp_key(path)
    fs.pipe_file(tmp, data)
    try:
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def atomic_write_text(url: str, text: str) -> None:
    atomic_write(url, text.encode("utf-8"))


def atomic_write_json(url: str, obj: Any) -> None:
    atomic_write_text(url, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_open(url: str) -> Iterator[io.BytesIO]:
    """``with atomic_open(url) as f: f.write(...)``: nothing appears at ``url`` unless the block ends
    without an exception."""
    buf = io.BytesIO()
    yield buf
    atomic_write(url, buf.getvalue())


def upload_file(local_path: str, url: str) -> None:
    """Atomically copy a local file to ``url`` (temporary key, then move)."""
    with open(local_path, "rb") as f:
        atomic_write(url, f.read())


def download_file(url: str, local_path: str) -> str:
    fs, path = get_fs(url)
    try:
        fs.get_file(path, local_path)
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e
    return local_path


def write_marker(dir_url: str, info: dict[str, Any] | None = None) -> None:
    """Commit a directory of results: write ``_SUCCESS`` (JSON) last."""
    atomic_write_json(join(dir_url, SUCCESS), info or {})


def is_committed(dir_url: str) -> bool:
    return exists(join(dir_url, SUCCESS))


def local_path(url: str) -> str | None:
    """The local filesystem path for a plain or file:// URL, else None."""
    fs, path = get_fs(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return path
    return None
