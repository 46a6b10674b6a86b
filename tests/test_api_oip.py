"""Open Inference Protocol v2 through the reference client, ``tritonclient[http]``, against a real
uvicorn on 127.0.0.1, in JSON and binary tensor modes: the results equal the ``/v1`` routes'."""

from __future__ import annotations

import base64
import json
import os

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from helpers.api_assets import LID_LABELS, make_assets, tone, wav_bytes
from tritonclient.utils import InferenceServerException

from api.app import create_app
from api.background import serve_in_thread
from api.settings import Settings

KEY = "oip-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def auth() -> dict[str, str]:
    """A fresh headers dict per call: tritonclient writes its own headers into the one it is given."""
    return dict(AUTH)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import faiss

    root = str(tmp_path_factory.mktemp("oip"))
    assets = make_assets(root)
    flat = faiss.IndexFlatL2(64)
    flat.add(np.random.default_rng(0).standard_normal((12, 64)).astype(np.float32))
    index = os.path.join(root, "units.faiss")
    faiss.write_index(flat, index)  # a plain faiss index (flat: exact nearest centroid), no record
    settings = Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], index_uri=index, units_layer=2,
                        eager_load=True, api_keys=[KEY], max_audio_s=10.0, max_wait_ms=2.0)
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(url=server.removeprefix("http://"))


@pytest.fixture(scope="module")
def clip():
    from mhubert.audio import decode

    body = wav_bytes(tone(1.2, freq=310.0, seed=3))
    return decode(body).numpy(), body  # the waveform the /v1 routes decode from the file


def v1(server: str, route: str, body: bytes, **params) -> dict:
    r = httpx.post(server + route, content=body, params=params, headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _waveform(wav: np.ndarray, binary: bool) -> triton.InferInput:
    x = triton.InferInput("WAVEFORM", [wav.size], "FP32")
    return x.set_data_from_numpy(wav.astype(np.float32), binary_data=binary)


def _audio(body: bytes, binary: bool) -> triton.InferInput:
    x = triton.InferInput("AUDIO", [1], "BYTES")
    data = body if binary else base64.b64encode(body)
    return x.set_data_from_numpy(np.array([data], dtype=object), binary_data=binary)


def test_server_and_model_metadata(client, server):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(headers=auth())
    assert meta["name"] == "mhubert" and "binary_tensor_data" in meta["extensions"]
    for m in ("mhubert", "mhubert-lid", "mhubert-units"):
        assert client.is_model_ready(m, headers=auth())
    md = client.get_model_metadata("mhubert", headers=auth())
    assert {i["name"] for i in md["inputs"]} == {"WAVEFORM", "AUDIO"}
    assert md["outputs"][0] == {"name": "EMBEDDING", "datatype": "FP32", "shape": [-1, 64]}
    listed = httpx.get(server + "/v2/models", headers=auth()).json()["models"]
    assert [m["name"] for m in listed] == ["mhubert", "mhubert-lid", "mhubert-units"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_embeddings_equal_v1(client, server, clip, binary):
    wav, body = clip
    ref = np.array(v1(server, "/v1/embeddings", body, layer="2")["embeddings"][0])
    ref_frames = np.array(v1(server, "/v1/embeddings", body, pooling="none")["embeddings"][0])
    out = [triton.InferRequestedOutput("EMBEDDING", binary_data=binary)]
    for inp in (_waveform(wav, binary), _audio(body, binary)):
        r = client.infer("mhubert", [inp], outputs=out, parameters={"layer": 2}, headers=auth())
        np.testing.assert_allclose(r.as_numpy("EMBEDDING"), ref, atol=1e-5)
    r = client.infer("mhubert", [_audio(body, binary)], outputs=out, parameters={"pooling": "none"},
                     headers=auth())
    got = r.as_numpy("EMBEDDING")
    assert got.shape == ref_frames.shape == (59, 64)
    np.testing.assert_allclose(got, ref_frames, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_lid_and_units_equal_v1(client, server, clip, binary):
    wav, body = clip
    langs = v1(server, "/v1/lid", body, top_k=2)["languages"]
    outs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("LANGUAGE", "PROBABILITY")]
    r = client.infer("mhubert-lid", [_waveform(wav, binary)], outputs=outs, parameters={"top_k": 2},
                     headers=auth())
    # JSON outputs come back as str, binary ones as bytes
    got = [x.decode() if isinstance(x, bytes) else x for x in r.as_numpy("LANGUAGE")]
    assert got == [x["language"] for x in langs]
    assert set(LID_LABELS) >= {x["language"] for x in langs}
    np.testing.assert_allclose(r.as_numpy("PROBABILITY"), [x["probability"] for x in langs], atol=1e-5)
    units = v1(server, "/v1/units", body, dedup="true")
    # no requested outputs: tritonclient asks for every output in binary (binary_data_output)
    r = client.infer("mhubert-units", [_audio(body, binary)], parameters={"dedup": True}, headers=auth())
    assert r.as_numpy("UNITS").dtype == np.int32
    assert r.as_numpy("UNITS").tolist() == units["units"]
    assert r.as_numpy("DURATIONS").tolist() == units["durations"]
    plain = client.infer("mhubert-units", [_waveform(wav, binary)], headers=auth())
    assert plain.as_numpy("DURATIONS") is None
    assert np.repeat(units["units"], units["durations"]).tolist() == plain.as_numpy("UNITS").tolist()


def test_errors_are_the_protocols_shape(client, server, clip):
    wav, body = clip
    with pytest.raises(InferenceServerException, match="layer 9 is out of range"):
        client.infer("mhubert", [_waveform(wav, True)], parameters={"layer": 9}, headers=auth())
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [_waveform(wav, True)], headers=auth())
    with pytest.raises(InferenceServerException, match="too short"):
        client.infer("mhubert", [_waveform(wav[:100], True)], headers=auth())
    cases = [
        ({"inputs": []}, None, 400, "inputs"),
        ({"inputs": [{"name": "WAVEFORM", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}, None, 400,
         "2 values"),
        ({"inputs": [{"name": "AUDIO", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}, None, 400,
         "base64"),
        ({"inputs": [{"name": "WAVEFORM", "datatype": "FP32", "shape": [4],
                      "parameters": {"binary_data_size": 99}}]}, b"\0" * 16, 400, "binary"),
    ]
    for req, blob, status, fragment in cases:
        head = json.dumps(req).encode()
        headers = {**AUTH, "Inference-Header-Content-Length": str(len(head))} if blob else AUTH
        r = httpx.post(server + "/v2/models/mhubert/infer", content=head + (blob or b""), headers=headers)
        assert r.status_code == status and fragment in r.json()["error"], r.text
    r = httpx.post(server + "/v2/models/mhubert/infer", content=b"{}")
    assert r.status_code == 401 and isinstance(r.json()["error"], str)
    assert httpx.get(server + "/v2/models/nope/ready").status_code == 404
    text = httpx.get(server + "/metrics").text
    assert 'route="/v2/models/{model}/infer",status="200"' in text
