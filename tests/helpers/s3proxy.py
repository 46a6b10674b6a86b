"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server, for the tests.

``S3Proxy(upstream_endpoint, latency_s=0.0)`` forwards every request to ``upstream_endpoint``
(moto's ``ThreadedMotoServer``) and can, on a schedule or for a window, instead:

* ``"500"``: answer 500 InternalError with S3's XML error body;
* ``"503"``: answer 503 SlowDown ("Please reduce your request rate."), as S3 does when throttling;
* ``"reset"``: read the request line, the headers and half the body, then reset the connection
  (RST): the request never reaches the server (a write cut mid-body);
* ``"reset_after"``: forward the request (the server applies it), then reset instead of answering
  (the client cannot know whether its request took effect);
* ``"reset_mid_response"``: forward, send the status line, the headers and half the body, then
  reset (a read cut mid-body);
* ``"stall"``: read the request and answer nothing until ``stall_s`` passed (or the proxy stops),
  then close: the client's read timeout is what is under test;
* ``"refuse"``: :meth:`outage` closes the listening socket (and every open connection) so that
  connections are refused, and reopens it on the same port after ``seconds`` (or :meth:`up`).

Faults are scheduled with :meth:`inject` (the next ``times`` matching requests, optionally every
``every``-th, after skipping ``skip``) or for a window with :meth:`window` (every matching request
inside a ``with`` block). ``match`` selects requests by S3 operation (``"put"``, ``"get"``,
``"head"``, ``"list"``, ``"copy"``, ``"delete"``, ``"upload_part"``, ``"create_multipart"``,
``"complete_multipart"``), a tuple of them, or a callable on :class:`Request`; ``key`` by a regex on
the path. :attr:`injected` counts what was injected per fault (every fault test asserts its count
is above zero); :attr:`forwarded` counts requests that reached the server; :attr:`ops` counts
requests per operation.

Why the standard library (``socketserver`` threads + ``http.client``) and not a package: the
faults needed are below HTTP (a TCP reset half-way through a body, a refused port, a stalled
connection), which a mocking library (moto, responses) cannot produce and an application proxy
(mitmproxy) makes heavy to script; toxiproxy needs a separate server binary that cannot be
installed from a package registry here. A few hundred lines of stdlib keep the tests self-contained.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import re
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import pytest

FAULTS = ("500", "503", "reset", "reset_after", "reset_mid_response", "stall", "refuse")

_ERROR_BODIES = {
    "500": (500, "Internal Server Error", "InternalError",
            "We encountered an internal error. Please try again."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


@dataclass
class Request:
    """What a fault rule sees of a request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    op: str


def classify(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    """The S3 operation of a request (path-style addressing, as moto is reached here)."""
    parts = [p for p in path.split("/") if p]
    has_key = len(parts) >= 2
    if method == "HEAD":
        return "head"
    if method == "GET":
        return "get" if has_key else "list"
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "copy"
        if "partNumber" in query:
            return "upload_part"
        return "put" if has_key else "create_bucket"
    if method == "POST":
        if "uploads" in query:
            return "create_multipart"
        if "uploadId" in query:
            return "complete_multipart"
        if "delete" in query:
            return "delete"
        return "post"
    if method == "DELETE":
        return "delete"
    return method.lower()


@dataclass
class _Rule:
    fault: str
    match: Callable[[Request], bool]
    times: int | None          # None: until removed
    every: int = 1
    skip: int = 0
    stall_s: float = 30.0
    seen: int = 0
    fired: int = 0
    done: bool = False

    def take(self, req: Request) -> bool:
        if self.done or not self.match(req):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.seen - self.skip - 1) % self.every:
            return False
        self.fired += 1
        if self.times is not None and self.fired >= self.times:
            self.done = True
        return True


def _matcher(match: str | tuple[str, ...] | Callable[[Request], bool] | None,
             key: str | None) -> Callable[[Request], bool]:
    if match is None:
        def by_op(r: Request) -> bool:
            return True
    elif callable(match):
        by_op = match
    else:
        ops = (match,) if isinstance(match, str) else tuple(match)

        def by_op(r: Request) -> bool:
            return r.op in ops
    if key is None:
        return by_op
    rx = re.compile(key)
    return lambda r: by_op(r) and rx.search(r.path) is not None


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Aborted(Exception):
    """The handler dropped the connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: S3Proxy  # set on the subclass made per proxy

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, add=True)
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.proxy._track(self.connection, add=False)
        if self._upstream is not None:
            self._upstream.close()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Aborted:
            self.close_connection = True
        except (ConnectionError, OSError):
            self.close_connection = True

    def _body(self, limit: int | None = None) -> bytes:
        """The request body (Content-Length or chunked); with ``limit``, read at most that much."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
                if limit is not None and len(out) >= limit:
                    return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n if limit is None else min(n, limit))

    def _dispatch(self) -> None:
        p = self.proxy
        url = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        req = Request(self.command, url.path, query, headers, classify(self.command, url.path, query,
                                                                       headers))
        rule = p._pick(req)
        if p.latency_s > 0:
            time.sleep(p.latency_s)  # the latency under test, not a test's sleep
        fault = rule.fault if rule else None
        if fault == "reset":
            n = int(headers.get("content-length") or 0)
            if n:
                self._body(limit=max(1, n // 2))
            p._count("reset")
            _reset(self.connection)
            raise _Aborted
        body = self._body()
        if fault in _ERROR_BODIES:
            p._count(fault)
            self._send_error_xml(fault, url.path)
            return
        if fault == "stall":
            p._count("stall")
            p._stopped.wait(rule.stall_s)  # the stall under test
            _reset(self.connection)
            raise _Aborted
        status, reason, resp_headers, resp_body = self._forward(body)
        if fault == "reset_after":
            p._count("reset_after")
            _reset(self.connection)
            raise _Aborted
        self.send_response_only(status, reason)
        for k, v in resp_headers:
            if k.lower() not in ("transfer-encoding", "content-length", "connection", "date",
                                 "server"):
                self.send_header(k, v)
        length = str(len(resp_body))
        if self.command == "HEAD":  # no body: the object's size is the upstream's header
            length = next((v for k, v in resp_headers if k.lower() == "content-length"), "0")
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "reset_mid_response" and resp_body:
            self.wfile.write(resp_body[: max(1, len(resp_body) // 2)])
            self.wfile.flush()
            p._count("reset_mid_response")
            _reset(self.connection)
            raise _Aborted
        if fault == "reset_mid_response":
            p._count("reset_mid_response")
            _reset(self.connection)
            raise _Aborted
        self.wfile.write(resp_body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        p = self.proxy
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(p._up_host, p._up_port, timeout=60)
            try:
                self._upstream.request(self.command, self.path, body=body or None, headers=headers)
                resp = self._upstream.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self._upstream.close()
                self._upstream = None
                if attempt:
                    raise
        p._count_forward(self.command)
        return resp.status, resp.reason, resp.getheaders(), data

    def _send_error_xml(self, fault: str, resource: str) -> None:
        status, reason, code, message = _ERROR_BODIES[fault]
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<Resource>{resource}</Resource><RequestId>{uuid.uuid4().hex[:16]}</RequestId>"
                "</Error>").encode()
        self.send_response_only(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class S3Proxy:
    """See the module docstring. ``with S3Proxy(moto_endpoint) as p: ... p.endpoint ...``."""

    def __init__(self, upstream_endpoint: str, latency_s: float = 0.0) -> None:
        up = urllib.parse.urlsplit(upstream_endpoint)
        if up.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the proxy only forwards to loopback, not {upstream_endpoint}")
        self.upstream_endpoint = upstream_endpoint
        self._up_host, self._up_port = up.hostname, up.port or 80
        self.latency_s = float(latency_s)
        self.port = 0
        self.injected: collections.Counter[str] = collections.Counter()
        self.forwarded = 0
        self.ops: collections.Counter[str] = collections.Counter()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._timer: threading.Timer | None = None
        self._handler = type("Handler", (_Handler,), {"proxy": self})

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Proxy:
        self._stopped.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        self._close_listener()
        self._drop_connections()

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            self._server = _Server(("127.0.0.1", self.port), self._handler)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()

    def _close_listener(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            _reset(c)

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    # -- faults ------------------------------------------------------------------------------
    def inject(self, fault: str, times: int | None = 1, *, match=None, key: str | None = None,
               every: int = 1, skip: int = 0, stall_s: float = 30.0) -> _Rule:
        """Inject ``fault`` on the next ``times`` matching requests (``None``: until :meth:`clear`),
        on every ``every``-th of them, after letting ``skip`` through. Returns the rule (``.fired``)."""
        if fault not in FAULTS or fault == "refuse":
            raise ValueError(f"unknown request fault {fault!r}: use one of {FAULTS[:-1]} "
                             "(or outage() for 'refuse')")
        if every < 1 or skip < 0 or (times is not None and times < 1):
            raise ValueError("every >= 1, skip >= 0, times >= 1 or None")
        rule = _Rule(fault, _matcher(match, key), times, every, skip, stall_s)
        with self._lock:
            self._rules.append(rule)
        return rule

    @contextlib.contextmanager
    def window(self, fault: str, *, match=None, key: str | None = None, every: int = 1,
               stall_s: float = 30.0) -> Iterator[_Rule]:
        """Inject ``fault`` on every (``every``-th) matching request while the block runs."""
        rule = self.inject(fault, None, match=match, key=key, every=every, stall_s=stall_s)
        try:
            yield rule
        finally:
            self.remove(rule)

    def remove(self, rule: _Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every scheduled fault (the counters stay)."""
        with self._lock:
            self._rules.clear()

    def down(self) -> None:
        """Stop listening and drop open connections: new connections are refused."""
        self._count("refuse")
        self._close_listener()
        self._drop_connections()

    def up(self) -> None:
        """Listen again on the same port."""
        if not self._stopped.is_set():
            self._listen()

    def outage(self, seconds: float) -> None:
        """The endpoint goes away now (connections refused) and comes back after ``seconds``."""
        self.down()
        self._timer = threading.Timer(seconds, self.up)
        self._timer.daemon = True
        self._timer.start()

    def reset_counters(self) -> None:
        with self._lock:
            self.injected.clear()
            self.ops.clear()
            self.forwarded = 0

    # -- internals ---------------------------------------------------------------------------
    def _pick(self, req: Request) -> _Rule | None:
        with self._lock:
            self.ops[req.op] += 1
            for rule in self._rules:
                if rule.take(req):
                    if rule.done:
                        self._rules.remove(rule)
                    return rule
        return None

    def _count(self, fault: str) -> None:
        with self._lock:
            self.injected[fault] += 1

    def _count_forward(self, method: str) -> None:
        with self._lock:
            self.forwarded += 1


@pytest.fixture
def s3_proxy(s3_server, monkeypatch):
    """A fault-injecting proxy in front of the session's moto server; ``AWS_ENDPOINT_URL`` points at
    it for the test, and the storage retry budget and request timeout are seconds, not minutes."""
    import s3fs

    with S3Proxy(s3_server) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("MHUBERT_STORAGE_RETRY_BUDGET_S", "20")
        monkeypatch.setenv("MHUBERT_STORAGE_TIMEOUT_S", "2")
        s3fs.S3FileSystem.clear_instance_cache()
        yield proxy
        s3fs.S3FileSystem.clear_instance_cache()
