"""A corpus of bad (and awkward but valid) audio against the running app: 4xx with a named problem or
a correct result, never a 500."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.api_assets import make_assets, tone, wav_bytes

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    assets = make_assets(str(tmp_path_factory.mktemp("audio_assets")))
    settings = Settings(model_uri=assets["ckpt"], eager_load=True, max_audio_s=10.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _good() -> bytes:
    return wav_bytes(tone(1.0))


def _huge_declared() -> bytes:
    g = _good()  # canonical 44-byte header: the data chunk size sits at bytes 40..44
    return g[:40] + struct.pack("<I", 0x7FFFFFF0) + g[44:]


BAD = {
    "truncated": (lambda: _good()[: len(_good()) // 2], "truncated"),
    "header_only": (lambda: _good()[:44], "truncated"),
    "zero_length_body": (lambda: b"", "empty"),
    "zero_frames_wav": (lambda: wav_bytes(np.zeros(0, dtype=np.float32)), "zero-length"),
    "single_sample": (lambda: wav_bytes(np.array([0.1], dtype=np.float32)), "too short"),
    "below_one_frame": (lambda: wav_bytes(tone(0.02)), "too short"),  # 320 samples < 400
    "nan_floats": (lambda: wav_bytes(np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT"), "NaN"),
    "inf_float": (lambda: wav_bytes(np.append(tone(1.0), np.float32(np.inf)), subtype="FLOAT"), "infinite"),
    "random_bytes": (lambda: np.random.default_rng(0).bytes(5000), "undecodable"),
    "riff_then_garbage": (lambda: b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(64), "undecodable"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_audio_is_422_naming_the_problem(client, name):
    make, fragment = BAD[name]
    r = client.post("/v1/embeddings", content=make())
    assert r.status_code == 422, (name, r.text)
    err = r.json()["error"]
    assert err["code"] == "invalid_audio" and fragment.lower() in err["message"].lower(), err


def test_text_file_named_wav_multipart(client):
    text = {"file": ("speech.wav", b"hello, I am not audio\n" * 20, "audio/wav")}
    r = client.post("/v1/lid", files=text)
    # no LID head here: the audio is never looked at, the missing head is the error
    assert r.status_code == 409
    r = client.post("/v1/embeddings", files=text)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_audio"


def test_huge_declared_size_reads_only_what_is_there(client):
    r = client.post("/v1/embeddings", content=_huge_declared())
    assert r.status_code in (200, 413, 422), r.text
    if r.status_code == 200:
        assert r.json()["duration_s"] == pytest.approx(1.0)
    else:
        assert r.json()["error"]["message"]


def test_long_compressed_audio_is_413_before_decoding(client):
    silence = np.zeros(16000 * 12, dtype=np.float32)  # 12 s > the 10 s limit, a few kB as FLAC
    body = wav_bytes(silence, fmt="FLAC", subtype="PCM_16")
    assert len(body) < 50_000
    r = client.post("/v1/embeddings", content=body)
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long"


VALID = {
    "8k_stereo": (lambda: wav_bytes(np.stack([tone(1.0, 8000), tone(1.0, 8000, 330.0)], 1), sr=8000), 1.0),
    "24bit": (lambda: wav_bytes(tone(1.0), subtype="PCM_24"), 1.0),
    "float_wav_44k": (lambda: wav_bytes(tone(0.5, 44100), sr=44100, subtype="FLOAT"), 0.5),
    "flac": (lambda: wav_bytes(tone(1.0), fmt="FLAC", subtype="PCM_16"), 1.0),
    "ogg_vorbis": (lambda: wav_bytes(tone(1.0, 22050), sr=22050, fmt="OGG", subtype="VORBIS"), 1.0),
    "mp3": (lambda: wav_bytes(tone(1.0), fmt="MP3", subtype="MPEG_LAYER_III"), None),
    "silence": (lambda: wav_bytes(np.zeros(16000, dtype=np.float32)), 1.0),
    "six_channels": (lambda: wav_bytes(np.tile(tone(0.5)[:, None], (1, 6))), 0.5),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_audio_any_rate_and_channels(client, name):
    make, seconds = VALID[name]
    r = client.post("/v1/embeddings", content=make())
    assert r.status_code == 200, (name, r.text)
    body = r.json()
    if seconds is not None:
        assert body["duration_s"] == pytest.approx(seconds, abs=1e-3)
    else:  # mp3 frames pad the start/end a little
        assert 0.9 < body["duration_s"] < 1.2
    assert np.isfinite(np.array(body["embeddings"])).all()


def test_stereo_is_the_channel_mean(client):
    left, right = tone(1.0, freq=200.0), tone(1.0, freq=300.0, seed=1)
    both = wav_bytes(np.stack([left, right], 1), subtype="FLOAT")
    stereo = client.post("/v1/embeddings", content=both).json()
    mono = client.post("/v1/embeddings", content=wav_bytes((left + right) / 2, subtype="FLOAT")).json()
    np.testing.assert_allclose(stereo["embeddings"], mono["embeddings"], atol=1e-4)
