"""fsspec URL helpers, atomic publishing, and the one place storage retries are configured.

Every path in this project is a URL: a plain path, ``file://``, ``s3://`` or ``memory://``.
S3 settings come from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

Atomicity: local files are written to a temporary file beside the target, fsynced and renamed.
An object store makes an object visible only once its upload completed (a single PUT, or
CompleteMultipartUpload for large objects), so writing straight to the final key is already
all-or-nothing there: an upload cut at any point leaves the old object (or none), never part of the
new one, and repeating it is safe. Directories of results are published by writing their parts first
and a ``_SUCCESS`` marker last (:func:`write_marker`, ``mhubert.artifacts``); readers trust a
directory only when its marker exists.

Retries (configured here and nowhere else), all sized by one retry budget in seconds, minutes in
production (:data:`DEFAULT_RETRY_BUDGET_S`), seconds in the tests (``MHUBERT_STORAGE_RETRY_BUDGET_S``):

1. botocore retries every S3 request ("standard" mode: 500s, 503 SlowDown, throttling, refused and
   reset connections, read timeouts) with exponential backoff and jitter, with as many attempts as
   its backoff needs to span the budget (:func:`botocore_attempts`); so does code that uses
   :func:`get_fs` directly.
2. s3fs repeats what it sees while reading bodies (:data:`S3FS_RETRIES`).
3. Each call of this module on a remote URL is repeated as a whole while the error is transient
   (:func:`is_transient`: e.g. a connection reset half-way through a body, which botocore cannot
   retry) until the budget is spent, with backoff and jitter (:func:`call`; wrap streaming code in it).

A call therefore gives up between one and two budgets after the endpoint went away, with
:class:`StorageUnavailable`: one line naming the URL and the endpoint. One request's connect and read
timeout is ``MHUBERT_STORAGE_TIMEOUT_S`` (a stalled request is abandoned and retried after it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import posixpath
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import fsspec
from fsspec.core import url_to_fs

from mhubert.errors import BadInput, StorageUnavailable

SUCCESS = "_SUCCESS"
RETRY_BUDGET_ENV = "MHUBERT_STORAGE_RETRY_BUDGET_S"
TIMEOUT_ENV = "MHUBERT_STORAGE_TIMEOUT_S"
DEFAULT_RETRY_BUDGET_S = 600.0     # an endpoint may be away for minutes (failover, throttling storms)
DEFAULT_TIMEOUT_S = 60.0           # one request's connect and read timeout
S3FS_RETRIES = 2                   # s3fs's own loop (body read errors, SlowDown it parses itself)
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 20.0
MULTIPART_CHUNK = 50 * 2**20       # objects of 2 chunks or more go up as multipart uploads

log = logging.getLogger(__name__)
T = TypeVar("T")


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise BadInput(f"{name}={raw!r} must be positive")
    return value


def retry_budget_s() -> float:
    """How long one storage call keeps retrying a transient error."""
    return _env_seconds(RETRY_BUDGET_ENV, DEFAULT_RETRY_BUDGET_S)


def request_timeout_s() -> float:
    return _env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def botocore_attempts(budget_s: float) -> int:
    """Attempts per request for botocore's standard mode so that its backoff (a random wait of
    up to ``min(20 s, 2**i)`` before retry i, half that on average) spans ``budget_s``."""
    n, waited = 1, 0.0
    while waited < budget_s and n < 64:
        waited += min(BACKOFF_MAX_S, 2.0 ** (n - 1)) / 2
        n += 1
    return n


def endpoint() -> str:
    """The S3 endpoint in use (``AWS_ENDPOINT_URL``), or AWS's default."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL") or "AWS S3"


def _storage_options(url: str) -> dict[str, Any]:
    if url.startswith(("s3://", "s3a://")):
        timeout = request_timeout_s()
        attempts = botocore_attempts(retry_budget_s())
        opts: dict[str, Any] = {"config_kwargs": {
            "retries": {"mode": "standard", "total_max_attempts": attempts},
            "connect_timeout": timeout, "read_timeout": timeout}}
        ep = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
        if ep:
            opts["client_kwargs"] = {"endpoint_url": ep}
        return opts
    return {}


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a URL or plain path (retries configured)."""
    if not url:
        raise BadInput("empty path or URL")
    try:
        fs, path = url_to_fs(url, **_storage_options(url))
    except (ValueError, ImportError) as e:
        raise BadInput(f"unsupported storage URL {url!r}: {e}") from e
    if hasattr(fs, "retries") and "s3" in _protocols(fs):
        fs.retries = S3FS_RETRIES
    return fs, path


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return bool({"file", "local"} & set(_protocols(fs)))


# -- retries ------------------------------------------------------------------------------------
_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "503", "500", "502", "504"}
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
              FileExistsError, BadInput, StorageUnavailable)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


def is_transient(e: BaseException) -> bool:
    """True for errors that a later attempt may not see: connection resets and refusals, timeouts,
    truncated bodies, HTTP 5xx and throttling. Missing keys, denied access and bad input are not."""
    import asyncio

    import botocore.exceptions as bex
    from botocore.parsers import ResponseParserError
    from fsspec.exceptions import FSTimeoutError
    try:
        from aiohttp import ClientError as AiohttpError
    except ImportError:  # pragma: no cover - s3fs depends on aiohttp
        AiohttpError = ConnectionError  # noqa: N806
    for x in _chain(e):
        if isinstance(x, _PERMANENT):
            return False
        if isinstance(x, ConnectionError | TimeoutError | asyncio.TimeoutError | FSTimeoutError
                      | AiohttpError | bex.ConnectionError | bex.HTTPClientError | bex.IncompleteReadError
                      | bex.ResponseStreamingError | ResponseParserError):
            return True
        if isinstance(x, bex.ClientError):
            err = x.response.get("Error", {})
            status = x.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return err.get("Code") in _TRANSIENT_CODES or int(status) >= 500
        if isinstance(x, OSError) and x.errno in _TRANSIENT_ERRNOS:
            return True
        if isinstance(x, OSError) and any(c in str(x) for c in (
                "SlowDown", "reduce your request rate", "InternalError", "ServiceUnavailable")):
            return True
    return False


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def unavailable(e: BaseException) -> StorageUnavailable | None:
    """``e`` as a one-line :class:`StorageUnavailable` when it is a transient storage error that
    outlived botocore's retries (for entry points: code that used :func:`get_fs` directly), else None."""
    if isinstance(e, StorageUnavailable):
        return e
    if not is_transient(e):
        return None
    return StorageUnavailable(f"storage unavailable at {endpoint()} past the retry budget "
                              f"({retry_budget_s():g} s from {RETRY_BUDGET_ENV}): {_one_line(e)}")


def call(url: str, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` (one storage operation on ``url``), repeating it while it fails transiently and
    the retry budget lasts; then :class:`StorageUnavailable`. Local files are not retried."""
    if "://" not in url or url.startswith(("file://", "memory://")):
        return fn()
    budget = retry_budget_s()
    start = time.monotonic()
    delay = BACKOFF_FIRST_S
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as e:
            if not is_transient(e):
                raise
            elapsed = time.monotonic() - start
            wait = random.uniform(0, delay)  # full jitter
            if elapsed + wait >= budget:
                raise StorageUnavailable(
                    f"storage unavailable: could not {what} {url} at {endpoint()} for {elapsed:.1f} s "
                    f"({attempt} attempts, retry budget {budget:g} s from {RETRY_BUDGET_ENV}): "
                    f"{_one_line(e)}") from e
            log.warning("storage: %s %s failed (%s); retry %d in %.2f s", what, url, _one_line(e),
                        attempt, wait)
            time.sleep(wait)  # backoff between attempts
            delay = min(delay * 2, BACKOFF_MAX_S)


# -- URLs ---------------------------------------------------------------------------------------
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


# -- reading ------------------------------------------------------------------------------------
def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return call(url, "check", lambda: fs.exists(path))


def size(url: str) -> int:
    """Size in bytes; ``FileNotFoundError`` when missing."""
    fs, path = get_fs(url)
    return int(call(url, "stat", lambda: fs.size(path)))


def isdir(url: str) -> bool:
    fs, path = get_fs(url)
    return call(url, "check", lambda: fs.isdir(path))


def find(url: str) -> list[str]:
    """Paths (inside the filesystem) of every file under ``url``, recursively."""
    fs, path = get_fs(url)
    return call(url, "list", lambda: fs.find(path))


def makedirs(url: str) -> None:
    fs, path = get_fs(url)
    call(url, "create", lambda: fs.makedirs(path, exist_ok=True))


def listdir(url: str) -> list[str]:
    """Names (not paths) of the entries directly under ``url``; empty if it does not exist."""
    fs, path = get_fs(url)

    def ls() -> list[str]:
        if not fs.exists(path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    return call(url, "list", ls)


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    try:
        return call(url, "read", lambda: fs.cat_file(path))
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def read_json(url: str) -> Any:
    try:
        return json.loads(read_text(url))
    except json.JSONDecodeError as e:
        raise BadInput(f"{url} is not valid JSON: {e}") from e


def download_file(url: str, local_path: str) -> str:
    fs, path = get_fs(url)
    try:
        call(url, "download", lambda: fs.get_file(path, local_path))
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e
    return local_path


def local_path(url: str) -> str | None:
    """The local filesystem path for a plain or file:// URL, else None."""
    fs, path = get_fs(url)
    return path if _is_local(fs) else None


# -- writing ------------------------------------------------------------------------------------
def remove(url: str, recursive: bool = False) -> None:
    fs, path = get_fs(url)

    def rm() -> None:
        if fs.exists(path):
            with contextlib.suppress(FileNotFoundError):  # a retried delete that already happened
                fs.rm(path, recursive=recursive)
    call(url, "remove", rm)


def _tmp_key(path: str) -> str:
    d, name = posixpath.split(path)
    return posixpath.join(d, f".tmp-{name}-{uuid.uuid4().hex[:12]}")


def atomic_write(url: str, data: bytes) -> None:
    """Write ``data`` so that ``url`` either holds all of it or what it held before (see the module
    docstring); an interrupted remote write is retried within the budget."""
    fs, path = get_fs(url)
    if _is_local(fs):
        with atomic_open(url) as f:
            f.write(data)
        return
    data = bytes(data)
    kwargs = {"chunksize": MULTIPART_CHUNK} if "s3" in _protocols(fs) else {}
    call(url, "write", lambda: fs.pipe_file(path, data, **kwargs))


def atomic_write_text(url: str, text: str) -> None:
    atomic_write(url, text.encode("utf-8"))


def atomic_write_json(url: str, obj: Any) -> None:
    atomic_write_text(url, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_open(url: str) -> Iterator[IO[bytes]]:
    """``with atomic_open(url) as f: f.write(...)``: nothing appears at ``url`` unless the block ends
    without an exception. The bytes go to a temporary file (beside ``url`` when it is local, else
    on local disk and then uploaded), never to memory: a 30M-row manifest is written in chunks."""
    import tempfile

    fs, path = get_fs(url)
    if _is_local(fs):
        parent_dir = posixpath.dirname(path)
        if parent_dir:
            fs.makedirs(parent_dir, exist_ok=True)
        tmp = _tmp_key(path)
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return
    with tempfile.NamedTemporaryFile(prefix=".mhubert-upload-") as f:
        yield f  # type: ignore[misc]
        f.flush()
        kwargs = {"chunksize": MULTIPART_CHUNK} if "s3" in _protocols(fs) else {}
        call(url, "write", lambda: fs.put_file(f.name, path, **kwargs))


def upload_file(local_path: str, url: str) -> None:
    """Atomically copy a local file to ``url``."""
    with open(local_path, "rb") as f:
        atomic_write(url, f.read())


def write_marker(dir_url: str, info: dict[str, Any] | None = None) -> None:
    """Commit a directory of results: write ``_SUCCESS`` (JSON) last."""
    atomic_write_json(join(dir_url, SUCCESS), info or {})


def is_committed(dir_url: str) -> bool:
    return exists(join(dir_url, SUCCESS))
