"""Serving under change (issue 14): SIGTERM to a real ``mhubert serve`` process, a reload under load
from 16 clients, slow and never-finishing bodies, oversized multipart forms."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers.api_assets import make_assets, tone, wav_bytes

from api.app import create_app
from api.background import free_port, serve_in_thread
from api.settings import Settings

ADMIN = "admin-key"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(str(tmp_path_factory.mktemp("lifecycle")))


def _http(body: bytes, path: str = "/v1/embeddings") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float = 60.0) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (Content-Length framed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest


def _in_progress(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return fams["mhubert_requests_in_progress"].samples[0].value


def _wait_for(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    """``mhubert serve ARGS`` in a fresh process on a free port, once uvicorn says it is listening."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "mhubert", "serve", "--host", "127.0.0.1", "--port",
                             str(port), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                            cwd=ROOT)
    log = b""
    deadline = time.monotonic() + 120
    while b"Uvicorn running on" not in log:  # uvicorn's start line: listening (model loaded unless lazy)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start: " + log.decode(errors="replace"))
        if select.select([proc.stderr], [], [], 1.0)[0]:
            log += os.read(proc.stderr.fileno(), 65536)
    return proc, f"http://127.0.0.1:{port}"


def test_sigterm_drains_accepted_requests_and_exits_0(assets):
    proc, url = _serve("--model", assets["ckpt"], "--max-batch-size", "2", "--drain-timeout", "20")
    port = int(url.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    try:
        assert httpx.get(url + "/v2/health/ready").status_code == 200
        body = wav_bytes(tone(2.0))
        # eight requests accepted: headers and half the body sent, the handler reading the rest
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(_http(body) + body[: len(body) // 2])
            socks.append(s)
        _wait_for(lambda: _in_progress(url) >= 9)  # the eight + this /metrics request
        proc.send_signal(signal.SIGTERM)
        # new requests are refused cleanly: connection refused once the listener is closed, or 503
        try:
            r = httpx.post(url + "/v1/embeddings", content=body, timeout=10)
            assert r.status_code == 503, r.text
        except httpx.TransportError:
            pass
        for s in socks:
            s.sendall(body[len(body) // 2:])
        for s in socks:
            status, payload = _read_response(s)
            assert status == 200, payload[:200]
            assert np.isfinite(json.loads(payload)["embeddings"]).all()
        assert proc.wait(timeout=30) == 0  # within the chart's terminationGracePeriodSeconds (30)
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("flag,fragment", [("--model", "missing.pt"), ("--lid", "no LID head"),
                                           ("--index", "not found")])
def test_serve_stops_with_one_line_on_a_bad_source(assets, tmp_path, capsys, flag, fragment):
    from mhubert.cli import main

    bad = str(tmp_path / ("missing.pt" if flag == "--model" else "missing"))
    args = ["serve", "--model", assets["ckpt"], flag, bad]
    args += ["--units-layer", "1"] if flag == "--index" else []
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "--lazy" in err and "Traceback" not in err


def test_serve_lazy_stays_up_not_ready_and_exits_0_on_sigterm(tmp_path):
    proc, url = _serve("--model", str(tmp_path / "missing.pt"), "--lazy")
    try:
        _wait_for(lambda: httpx.get(url + "/v2/health/ready").json()["detail"] != "loading")
        r = httpx.get(url + "/v2/health/ready")
        assert r.status_code == 503 and "missing.pt" in r.json()["detail"]
        assert httpx.get(url + "/v2/health/live").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_sigterm_handler_turns_readiness_false_at_once(assets):
    import uvicorn

    from api.server import Server
    from api.service import ModelService

    service = ModelService(Settings(model_uri=assets["ckpt"]))
    service.load()
    app = create_app(service.settings, service)
    server = Server(uvicorn.Config(app), service)
    with TestClient(app) as c:
        assert c.get("/v2/health/ready").status_code == 200
        server.handle_exit(signal.SIGTERM, None)
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and r.json()["detail"] == "shutting down"
        r = c.post("/v1/embeddings", content=wav_bytes(tone(0.5)))
        assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]
        assert server.should_exit


def test_a_request_that_arrived_before_sigterm_is_served_to_its_end(assets):
    """SIGTERM lands after a request arrived but before its route took the bundle (it was still
    reading its body, or waiting on a threadpool dependency): it is served; the next one is refused."""
    import uvicorn
    from starlette.middleware import Middleware

    from api.server import Server
    from api.service import ModelService

    service = ModelService(Settings(model_uri=assets["ckpt"]))
    service.load()
    app = create_app(service.settings, service)
    server = Server(uvicorn.Config(app), service)

    class SigtermOnArrival:   # innermost: the request has passed admission and the metrics
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and scope["path"] == "/v1/embeddings":
                server.handle_exit(signal.SIGTERM, None)
            await self.inner(scope, receive, send)

    app.user_middleware.append(Middleware(SigtermOnArrival))
    body = wav_bytes(tone(0.5))
    with TestClient(app) as c:
        r = c.post("/v1/embeddings", content=body)
        assert r.status_code == 200, r.text
        assert service.draining
        r = c.post("/v1/embeddings", content=body)
        assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]


def test_reload_under_load_fails_nothing_and_mixes_nothing(assets, tmp_path):
    """16 clients while the checkpoint is replaced by a 3-layer model and reloaded: every request
    answers 200 with exactly the old or exactly the new model's vector for its audio."""
    from mhubert.model import HubertConfig, HubertModel, load_model
    from mhubert.model.convert import save_checkpoint_model

    ckpt = str(tmp_path / "model.pt")
    old_model = load_model(assets["ckpt"])
    save_checkpoint_model(old_model, ckpt)
    torch.manual_seed(5)
    new_model = HubertModel(HubertConfig.preset("tiny", {"num_layers": 3})).eval()
    bodies = [wav_bytes(tone(0.4 + 0.1 * (i % 4), freq=170.0 + 35 * i, seed=i)) for i in range(16)]

    def ref(model, body: bytes) -> np.ndarray:
        from mhubert.audio import decode, normalize

        with torch.no_grad():
            return model.hidden_states(normalize(decode(body))[None])[-1][0].mean(0).numpy()

    refs = [(ref(old_model, b), ref(new_model, b)) for b in bodies]
    settings = Settings(model_uri=ckpt, eager_load=True, admin_key=ADMIN, max_queue=256, max_wait_ms=2.0)
    records: list[tuple[int, bool, int, list]] = []  # (client, started after reload, status, vector)

    async def run(url: str) -> None:
        reloaded, stop = asyncio.Event(), asyncio.Event()
        done = [0]

        async def client(i: int, ac: httpx.AsyncClient) -> None:
            while not stop.is_set():
                after = reloaded.is_set()
                r = await ac.post("/v1/embeddings", params={"layer": "-1"}, content=bodies[i])
                records.append((i, after, r.status_code, r.json().get("embeddings", [None])[0]))
                done[0] += 1

        async def controller(ac: httpx.AsyncClient) -> None:
            while done[0] < 48:
                await asyncio.sleep(0)  # yields to the clients; bounded by their progress
            await asyncio.to_thread(save_checkpoint_model, new_model, ckpt)  # atomic replace
            r = await ac.post("/v1/models/reload", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200 and r.json()["layers"] == 3, r.text
            reloaded.set()
            target = done[0] + 48
            while done[0] < target:
                await asyncio.sleep(0)
            stop.set()

        limits = httpx.Limits(max_connections=17)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as ac:
            await asyncio.gather(controller(ac), *[client(i, ac) for i in range(16)])

    with serve_in_thread(create_app(settings)) as url:
        asyncio.run(run(url))
    assert {status for _, _, status, _ in records} == {200}, "a request failed during the reload"
    seen = {"old": 0, "new": 0}
    for i, after, _, vec in records:
        old, new = refs[i]
        is_old = np.allclose(vec, old, atol=1e-4)
        is_new = np.allclose(vec, new, atol=1e-4)
        assert is_old != is_new, "a response matches neither model (or both)"
        seen["old" if is_old else "new"] += 1
        if after:
            assert is_new, "a request started after the reload answered on the old model"
    # 48 finished before the reload; of the 48 after it, at most the 16 then in flight ran on the old one
    assert seen["old"] >= 48 and seen["new"] >= 32


def test_slow_or_unfinished_body_gets_408_without_holding_a_slot(assets):
    settings = Settings(model_uri=assets["ckpt"], eager_load=True, body_timeout_s=1.0, max_batch_size=1,
                        max_queue=1)
    body = wav_bytes(tone(1.0))
    with serve_in_thread(create_app(settings)) as url:
        port = int(url.rsplit(":", 1)[1])
        never = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        try:
            never.sendall(_http(body) + body[:100])  # then nothing
            slow.sendall(_http(body) + body[:100])
            # meanwhile the model serves others: the stuck bodies hold no batch or queue slot
            for _ in range(3):
                assert httpx.post(url + "/v1/embeddings", content=body, timeout=30).status_code == 200
            slow.sendall(body[100:200])  # trickles on, but not to the end in time
            for s in (never, slow):
                status, payload = _read_response(s)
                assert status == 408 and json.loads(payload)["error"]["code"] == "request_timeout"
        finally:
            never.close()
            slow.close()


def test_multipart_with_many_parts_or_huge_fields_is_refused(assets):
    settings = Settings(model_uri=assets["ckpt"], eager_load=True, max_form_parts=8)
    audio = wav_bytes(tone(0.5))
    with TestClient(create_app(settings)) as c:
        many = {f"f{i}": (None, "x") for i in range(40)}
        r = c.post("/v1/embeddings", files={"file": ("a.wav", audio, "audio/wav"), **many})
        assert r.status_code == 413 and "Too many" in r.json()["error"]["message"]
        files = [("file", (f"a{i}.wav", audio, "audio/wav")) for i in range(12)]
        r = c.post("/v1/embeddings", files=files)
        assert r.status_code == 413 and "Too many files" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", files={"file": ("a.wav", audio, "audio/wav"),
                                            "note": (None, "x" * 200_000)})
        assert r.status_code == 413 and "exceeded" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", files={"file": ("a.wav", audio, "audio/wav"), "note": (None, "ok")})
        assert r.status_code == 200
