"""Every route and error of the API, in process (TestClient), with a random tiny model."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers.api_assets import LID_LABELS, make_assets, tone, wav_bytes

from api.app import create_app
from api.routes_v1 import parse_layers
from api.settings import Settings
from mhubert.errors import BadInput

ADMIN = "admin-secret"
KEYS = ["k1", "k2"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(str(tmp_path_factory.mktemp("api_assets")))


@pytest.fixture(scope="module")
def client(assets):
    settings = Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], eager_load=True, admin_key=ADMIN,
                        max_body_bytes=400_000, max_audio_s=10.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def audio():
    return wav_bytes(tone(1.0))


def _ref_hidden(hf_dir: str, wav: torch.Tensor) -> tuple:
    """transformers' HubertModel on the same (normalised) waveform: the reference."""
    import transformers

    ref = transformers.HubertModel.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        return ref(wav[None], output_hidden_states=True).hidden_states


def test_embeddings_match_transformers_hubert(client, assets, audio):
    from mhubert.audio import decode

    r = client.post("/v1/embeddings?layer=0,2,-1&pooling=none", content=audio)
    assert r.status_code == 200, r.text
    body = r.json()
    wav = decode(audio, 16000, normalize=True)
    ref = _ref_hidden(assets["hf"], wav)
    assert body["layers"] == [0, 2, 4] and body["frame_rate"] == 50 and body["pooling"] == "none"
    assert body["num_frames"] == ref[0].shape[1] == 49 and body["duration_s"] == pytest.approx(1.0)
    got = torch.tensor(body["embeddings"])
    assert got.shape == (3, 49, 64)
    for i, k in enumerate([0, 2, 4]):
        torch.testing.assert_close(got[i], ref[k][0], atol=1e-4, rtol=1e-4)
    # default: last layer, mean over frames
    pooled = client.post("/v1/embeddings", content=audio).json()
    assert pooled["layers"] == [4] and pooled["dim"] == 64
    torch.testing.assert_close(torch.tensor(pooled["embeddings"][0]), ref[4][0].mean(0), atol=1e-4, rtol=1e-4)


def test_transformers_directory_serves_same_vectors(assets, client, audio):
    settings = Settings(model_uri=assets["hf"], eager_load=True)
    with TestClient(create_app(settings)) as c:
        a = c.post("/v1/embeddings", content=audio).json()["embeddings"]
    b = client.post("/v1/embeddings", content=audio).json()["embeddings"]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_multipart_normalize_and_npy(client, audio):
    r = client.post("/v1/embeddings?normalize=true&layer=1&layer=3",
                    files={"file": ("a.wav", audio, "audio/wav")})
    assert r.status_code == 200, r.text
    vecs = np.array(r.json()["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=-1), 1.0, atol=1e-5)
    raw = np.array(client.post("/v1/embeddings?layer=1,3", content=audio).json()["embeddings"])
    np.testing.assert_allclose(vecs, raw / np.linalg.norm(raw, axis=-1, keepdims=True), atol=1e-5)
    for kwargs in ({"params": {"format": "npy", "pooling": "none"}},
                   {"params": {"pooling": "none"}, "headers": {"Accept": "application/x-npy"}}):
        r = client.post("/v1/embeddings", content=audio, **kwargs)
        assert r.headers["content-type"] == "application/x-npy"
        arr = np.load(io.BytesIO(r.content))
        assert arr.dtype == np.float32 and arr.shape == (1, 49, 64)
        assert r.headers["x-mhubert-num-frames"] == "49" and r.headers["x-mhubert-layers"] == "4"


def test_lid_top_k(client, audio):
    r = client.post("/v1/lid", content=audio)
    assert r.status_code == 200, r.text
    langs = r.json()["languages"]
    assert len(langs) == 3 and {x["language"] for x in langs} == set(LID_LABELS)
    probs = [x["probability"] for x in langs]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert len(client.post("/v1/lid?top_k=1", content=audio).json()["languages"]) == 1


def test_lid_without_head_is_409(assets, audio):
    with TestClient(create_app(Settings(model_uri=assets["ckpt"], eager_load=True))) as c:
        r = c.post("/v1/lid", content=audio)
        assert r.status_code == 409 and r.json()["error"]["code"] == "lid_not_loaded"
        assert "--lid" in r.json()["error"]["message"]
        assert c.get("/v1/models").json()["models"][0]["lid_languages"] == []


def test_models_and_health(client, assets):
    info = client.get("/v1/models").json()["models"][0]
    assert info["name"] == "mhubert" and info["ready"] and info["layers"] == 4 and info["dim"] == 64
    assert info["lid_languages"] == LID_LABELS and info["source"] == assets["ckpt"]
    from mhubert.model import hubert_tiny

    assert info["parameters"] == sum(p.numel() for p in hubert_tiny().parameters())
    assert client.get("/v2/health/live").json()["status"] == "alive"
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/mhubert/ready").json() == {"name": "mhubert", "ready": True}
    r = client.get("/v2/models/other/ready")
    assert r.status_code == 404 and "other" in r.json()["error"]  # the protocol's {"error": "message"}


def test_metrics_text(client, audio):
    client.post("/v1/embeddings", content=audio)
    r = client.get("/metrics", follow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("mhubert_requests_total", "mhubert_queue_wait_seconds_bucket", "mhubert_preprocess_seconds",
                 "mhubert_inference_seconds", "mhubert_batch_size_bucket", "mhubert_audio_seconds_total"):
        assert name in text, name
    assert 'route="/v1/embeddings",status="200"' in text
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(text)}
    audio_s = sum(s.value for s in fams["mhubert_audio_seconds"].samples if s.name.endswith("_total"))
    assert audio_s >= 1.0


@pytest.mark.parametrize("query,fragment", [
    ("layer=9", "out of range"), ("layer=abc", "integer"), ("pooling=max", "pooling"),
    ("normalize=maybe", "normalize"), ("format=xml", "format"),
])
def test_bad_parameters_are_422(client, audio, query, fragment):
    r = client.post(f"/v1/embeddings?{query}", content=audio)
    assert r.status_code == 422
    assert fragment in r.json()["error"]["message"]


def test_limits(client):
    r = client.post("/v1/embeddings", content=b"\0" * 400_001)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    long = wav_bytes(tone(11.0, sr=8000), sr=8000, subtype="PCM_U8")  # 11 s in ~90 kB: too long, not too big
    r = client.post("/v1/embeddings", content=long)
    assert r.status_code == 413 and "11.0 s" in r.json()["error"]["message"]
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post("/v1/embeddings", content=b"a=1", headers=form)
    assert r.status_code == 422
    r = client.post("/v1/embeddings", files={"other": (None, "x")})
    assert r.status_code == 422 and "file" in r.json()["error"]["message"]


def test_not_found_and_method_errors_are_json(client):
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    r = client.get("/v1/embeddings")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_api_keys_guard_inference_only(assets, audio, tmp_path, monkeypatch):
    key_file = tmp_path / "keys"
    key_file.write_text("# mounted secret\nk2\n")
    monkeypatch.setenv("MHUBERT_API_KEYS", "k1")
    monkeypatch.setenv("MHUBERT_API_KEYS_FILE", str(key_file))
    settings = Settings.from_env(model_uri=assets["ckpt"], eager_load=True)
    assert settings.api_keys == KEYS
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/embeddings", content=audio)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        bad = c.post("/v1/embeddings", content=audio, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        for k in KEYS:
            r = c.post("/v1/embeddings", content=audio, headers={"Authorization": f"Bearer {k}"})
            assert r.status_code == 200
        assert c.get("/v1/models").status_code == 401
        for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/docs", "/openapi.json"):
            assert c.get(open_path).status_code == 200, open_path


def test_reload_needs_admin_key(client, assets):
    assert client.post("/v1/models/reload").status_code == 401
    assert client.post("/v1/models/reload", headers={"Authorization": "Bearer k1"}).status_code == 401
    r = client.post("/v1/models/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.json()["ready"] and r.json()["source"] == assets["ckpt"]
    # no client-supplied path is accepted: the route takes no parameters
    schema = client.get("/openapi.json").json()["paths"]["/v1/models/reload"]["post"]
    assert "parameters" not in schema and "requestBody" not in schema


def test_loads_model_and_head_from_s3(assets, s3_bucket, audio, client):
    from mhubert import storage

    storage.upload_file(assets["ckpt"], f"{s3_bucket}/serving/model.pt")
    for name in ("head.pt", "labels.json"):
        storage.upload_file(f"{assets['lid']}/{name}", f"{s3_bucket}/serving/lid/{name}")
    settings = Settings(model_uri=f"{s3_bucket}/serving/model.pt", lid_uri=f"{s3_bucket}/serving/lid",
                        eager_load=True)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models").json()["models"][0]["lid_languages"] == LID_LABELS
        a = c.post("/v1/lid", content=audio).json()["languages"]
    assert a == client.post("/v1/lid", content=audio).json()["languages"]


def test_reload_disabled_without_admin_key(assets):
    with TestClient(create_app(Settings(model_uri=assets["ckpt"], eager_load=True))) as c:
        r = c.post("/v1/models/reload", headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and "MHUBERT_ADMIN_KEY" in r.json()["error"]["message"]


def test_failed_load_is_not_ready(tmp_path, audio):
    with TestClient(create_app(Settings(model_uri=str(tmp_path / "missing.pt"), eager_load=True))) as c:
        assert c.get("/v2/health/live").status_code == 200
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and "missing.pt" in r.json()["detail"]
        assert c.get("/v2/models/mhubert/ready").status_code == 503
        r = c.post("/v1/embeddings", content=audio)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"
        assert c.get("/v1/models").json()["models"][0]["state"] == "failed"


def test_background_load_becomes_ready(assets, audio):
    with TestClient(create_app(Settings(model_uri=assets["ckpt"]))) as c:
        c.portal.call(_wait_ready, c.app)  # the lifespan started the load; wait for it without sleeping
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v1/embeddings", content=audio).status_code == 200


async def _wait_ready(app) -> None:
    import asyncio

    while not app.state.service.ready and app.state.service.state == "loading":
        await asyncio.sleep(0)  # yields to the loader task; bounded by the load itself


def test_parse_layers():
    assert parse_layers(None, 12) == (12,)
    assert parse_layers(["6,9", "6"], 12) == (6, 9)
    assert parse_layers(["-1", "0"], 12) == (12, 0)
    assert parse_layers(["all"], 2) == (0, 1, 2)
    for bad in (["13"], ["-14"], ["x"], ["1.5"]):
        with pytest.raises(BadInput):
            parse_layers(bad, 12)


def test_settings_from_env_and_validation():
    s = Settings.from_env({"MHUBERT_MAX_BATCH_SIZE": "3", "MHUBERT_EAGER_LOAD": "yes",
                           "MHUBERT_MAX_WAIT_MS": "2.5", "MHUBERT_MODEL_URI": "s3://b/m"})
    assert (s.max_batch_size, s.eager_load, s.max_wait_ms, s.model_uri) == (3, True, 2.5, "s3://b/m")
    with pytest.raises(BadInput, match="MHUBERT_MAX_BATCH_SIZE"):
        Settings.from_env({"MHUBERT_MAX_BATCH_SIZE": "many"})
    with pytest.raises(BadInput, match="max_queue"):
        Settings(max_queue=0)
    with pytest.raises(BadInput, match="device"):
        Settings(device="tpu")


def test_serve_cli_errors_without_model(monkeypatch, capsys):
    from mhubert.cli import main

    monkeypatch.delenv("MHUBERT_MODEL_URI", raising=False)
    assert main(["serve"]) == 2
    assert "--model" in capsys.readouterr().err


def test_lazy_module_app(assets, monkeypatch, audio):
    import api.app as module

    monkeypatch.setenv("MHUBERT_MODEL_URI", assets["ckpt"])
    monkeypatch.setenv("MHUBERT_EAGER_LOAD", "1")
    monkeypatch.setattr(module, "_lazy_app", None)
    app = module.app
    assert app is module.app  # built once
    with TestClient(app) as c:
        assert c.post("/v1/embeddings", content=audio).status_code == 200


def test_failed_reload_keeps_serving(assets, tmp_path, audio):
    import shutil

    ckpt = str(tmp_path / "model.pt")
    shutil.copy(assets["ckpt"], ckpt)
    with TestClient(create_app(Settings(model_uri=ckpt, eager_load=True, admin_key=ADMIN))) as c:
        os.remove(ckpt)
        r = c.post("/v1/models/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "reload_failed"
        assert "still serving" in r.json()["error"]["message"]
        assert c.post("/v1/embeddings", content=audio).status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
