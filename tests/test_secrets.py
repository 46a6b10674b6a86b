"""Secrets stay secret: a run given a random S3 secret (and session token) and a random API key
writes neither into any log line (DEBUG logging on) or any byte it stores (configs, markers, metrics,
checkpoints, models, plots, caches), and the server never echoes a key it was sent."""

from __future__ import annotations

import http.client
import io
import json
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers.corpora import write_tone_corpus

from mhubert import storage

REPO = Path(__file__).resolve().parents[1]
TRAIN_SET = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
             "data.min_sample_size=16000", "data.num_workers=0", "train.log_interval=1",
             "train.max_update=2", "train.save_interval_updates=1"]


@pytest.fixture
def secret_env(s3_server, tmp_path, monkeypatch):
    """Random credentials (moto accepts any), a random API key, and a private HOME / cache / tmp so
    that every byte the run writes outside the bucket lands under ``tmp_path``."""
    import s3fs

    sec = {"AWS_SECRET_ACCESS_KEY": "sk" + secrets.token_hex(20),
           "AWS_SESSION_TOKEN": "tok" + secrets.token_hex(24),
           "MHUBERT_API_KEYS": "key" + secrets.token_hex(16),
           "MHUBERT_ADMIN_KEY": "adm" + secrets.token_hex(16)}
    home = tmp_path / "home"
    for d in ("home", "cache", "tmp", "mpl"):
        (tmp_path / d).mkdir()
    env = {**sec, "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
           "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp"),
           "MPLCONFIGDIR": str(tmp_path / "mpl"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"sec-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}).mkdir(bucket)
    s3fs.S3FileSystem.clear_instance_cache()
    yield {"secrets": sec, "root": f"s3://{bucket}", "bucket": bucket, "local": tmp_path}
    s3fs.S3FileSystem.clear_instance_cache()


def _leaks(blob: bytes, sec: dict[str, str]) -> list[str]:
    """Which secrets (or their first 16 characters) occur in ``blob``."""
    return [k for k, v in sec.items() if v.encode() in blob or v[:16].encode() in blob]


def _stored_bytes(env: dict) -> dict[str, bytes]:
    """Every object in the run's bucket and every file under its private local dirs."""
    fs, _ = storage.get_fs(env["root"])
    fs.invalidate_cache()
    out = {f"s3://{p}": fs.cat_file(p) for p in fs.find(env["bucket"])}
    for p in env["local"].rglob("*"):
        if p.is_file():
            out[str(p)] = p.read_bytes()
    return out


def test_a_pipeline_run_keeps_the_secrets_out_of_logs_and_artifacts(secret_env):
    root = secret_env["root"]
    write_tone_corpus(root)
    m = f"{root}/corpus/manifest.tsv"
    runs = [
        ["-v", "corpus", "manifest", "--root", f"{root}/audio", "--out", f"{root}/corpus",
         "--min-seconds", "1", "--workers", "2", "--quiet"],
        ["-v", "cluster", "sample", "--manifest", m, "--out", f"{root}/clu", "--budget-gb", "0.001",
         "--preset", "tiny", "--quiet"],
        ["-v", "cluster", "fit", "--out", f"{root}/clu", "--preset", "tiny", "--num-clusters", "5",
         "--mode", "exact", "--quiet"],
        ["-v", "cluster", "assign", "--manifest", m, "--out", f"{root}/clu", "--labels", f"{root}/labels",
         "--preset", "tiny", "--quiet"],
        ["-v", "cluster", "merge", "--labels", f"{root}/labels", "--num-shards", "1", "--quiet"],
        ["-v", "train", "run", "--preset", "tiny", "--manifest", m, "--labels", f"{root}/labels",
         "--out", f"{root}/train", *[a for s in TRAIN_SET for a in ("--set", s)]],
        ["-v", "model", "export", "--checkpoint", f"{root}/train/checkpoints/step-00000002.pt",
         "--out", f"{root}/serving/model"],
    ]
    # one interpreter runs the stages in turn through the public CLI entry point, DEBUG logging on
    script = ("import json, sys\nfrom mhubert.cli import main\n"
              "for a in json.loads(sys.argv[1]):\n"
              "    rc = main(a)\n"
              "    if rc:\n        sys.exit(f'stage {a[1:3]} exited {rc}')\n")
    r = subprocess.run([sys.executable, "-c", script, json.dumps(runs)], cwd=REPO, env=dict(os.environ),
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    logs = r.stdout + r.stderr
    assert b"DEBUG" in logs and len(logs.splitlines()) > 20  # the logs were really there to look at
    sec = secret_env["secrets"]
    assert _leaks(logs, sec) == []
    stored = _stored_bytes(secret_env)
    for must in ("corpus/_SUCCESS", "labels/_SUCCESS", "train/log.jsonl", "serving/model/config.json",
                 "train/checkpoints/step-00000002.pt"):
        assert any(k.endswith(must) for k in stored), must
    leaked = {k: _leaks(v, sec) for k, v in stored.items() if _leaks(v, sec)}
    assert leaked == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen, needle: bytes, out: bytearray, timeout_s: float) -> bool:
    """Collect the server's output until ``needle`` appears (or ``timeout_s`` passes, or it exits)."""
    import time

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            return False
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        out += chunk
    return True


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        c.close()


def test_serving_keeps_the_keys_out_of_logs_responses_and_metrics(secret_env, tmp_path):
    import torch

    from mhubert.model import hubert_tiny, save_hf

    torch.manual_seed(0)
    model_url = f"{secret_env['root']}/serving/model"
    save_hf(hubert_tiny().eval(), model_url)        # loaded from S3 with the secret credentials
    sec = secret_env["secrets"]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mhubert", "-v", "serve", "--model", model_url,
                             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                             "--threads", "1", "--log-level", "debug"],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = bytearray()
    try:
        assert _read_until(proc, b"Uvicorn running", out, 120), out.decode(errors="replace")[-2000:]
        assert _read_until(proc, b"loaded", out, 120) or b"loaded" in out, out.decode(errors="replace")
        wav = io.BytesIO()
        sf.write(wav, (0.3 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000, format="WAV")
        key = sec["MHUBERT_API_KEYS"]
        ok, body = _request(port, "POST", "/v1/embeddings", wav.getvalue(),
                            {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"})
        assert ok == 200, body[:500]
        wrong = "wrong" + secrets.token_hex(16)
        denied, denied_body = _request(port, "POST", "/v1/embeddings", wav.getvalue(),
                                       {"Authorization": f"Bearer {wrong}", "Content-Type": "audio/wav"})
        assert denied == 401
        _, reload_body = _request(port, "POST", "/v1/models/reload", b"",
                                  {"Authorization": f"Bearer {wrong}"})
        _, metrics = _request(port, "GET", "/metrics")
        _, models = _request(port, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        out += rest or b""
    assert b"POST /v1/embeddings" in out or b"/v1/embeddings" in out  # access log lines were there
    every = {**sec, "wrong key": wrong}
    for name, blob in {"server log": bytes(out), "200 body": body, "401 body": denied_body,
                       "reload answer": reload_body, "metrics": metrics, "models": models}.items():
        assert _leaks(blob, every) == [], name
    leaked = {k: _leaks(v, every) for k, v in _stored_bytes(secret_env).items() if _leaks(v, every)}
    assert leaked == {}


def test_redaction_masks_values_and_credential_headers(monkeypatch, tmp_path):
    import logging

    from mhubert import redaction

    token, key, filekey = "tok" + secrets.token_hex(12), "key" + secrets.token_hex(12), secrets.token_hex(9)
    (tmp_path / "keys").write_text(f"{filekey}\n")
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    monkeypatch.setenv("MHUBERT_API_KEYS", f"{key},x")
    monkeypatch.setenv("MHUBERT_API_KEYS_FILE", str(tmp_path / "keys"))
    stream = io.StringIO()
    logger = logging.getLogger(f"redaction-test-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.DEBUG)
    redaction.install(logger)
    headers = {"X-Amz-Security-Token": b"other" + secrets.token_hex(8).encode(),
               "Authorization": b"AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=" + b"ab" * 32}
    logger.debug("Sending http request: %s", headers)
    logger.info("client sent %s then Bearer %s and %s", key, "someothertoken1", filekey)
    logger.warning("token %s", token)
    text = stream.getvalue()
    assert token not in text and key not in text and filekey not in text and "ab" * 32 not in text
    assert "someothertoken1" not in text and str(headers["X-Amz-Security-Token"])[2:-1] not in text
    assert text.count(redaction.MASK) >= 6 and "Sending http request" in text
