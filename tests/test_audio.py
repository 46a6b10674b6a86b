"""Audio decoding against soundfile, torchaudio's resampler and F.layer_norm."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from mhubert import audio, storage
from mhubert.errors import AudioError, BadInput


def _tone(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a chirp per channel plus a little noise, within [-0.5, 0.5]."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    cols = [0.3 * np.sin(2 * np.pi * (200 + 150 * c) * t * (1 + t)) + 0.02 * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def _encode(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_wav_and_flac_decode_bit_exact_against_soundfile():
    x = _tone(16000, 1.0)
    for fmt in ("WAV", "FLAC"):
        data = _encode(x, 16000, fmt, "PCM_16")
        ref, sr = sf.read(io.BytesIO(data), dtype="float32")
        got = audio.decode(data)
        assert sr == 16000 and got.dtype == torch.float32 and got.shape == (16000,)
        assert torch.equal(got, torch.from_numpy(ref)), fmt


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_decode_close_to_the_source(fmt, subtype):
    x = _tone(16000, 1.0)
    got = audio.decode(_encode(x, 16000, fmt, subtype))
    # Lossy codecs add a little delay/padding; compare the overlap by correlation.
    assert abs(got.numel() - 16000) < 2000
    src = torch.from_numpy(x[:, 0])
    best = max(float(torch.corrcoef(torch.stack([got[k:k + 12000], src[:12000]]))[0, 1])
               for k in range(0, 1200, 1))
    assert best > 0.95, f"{fmt}: best correlation {best:.3f}"


def test_stereo_is_the_mean_of_channels():
    x = _tone(16000, 0.5, channels=2)
    got = audio.decode(_encode(x, 16000, "WAV", "FLOAT"))
    torch.testing.assert_close(got, torch.from_numpy(x.mean(axis=1)), rtol=0, atol=1e-7)
    assert not torch.allclose(got, torch.from_numpy(x[:, 0]), atol=1e-3)


@pytest.mark.parametrize("sr", [8000, 44100, 22050])
def test_resampling_to_16k_matches_torchaudio(sr):
    x = _tone(sr, 0.7, channels=2)
    got = audio.decode(_encode(x, sr, "WAV", "FLOAT"))
    ref = AF.resample(torch.from_numpy(x.mean(axis=1)), sr, 16000)
    assert got.shape == ref.shape
    assert abs(got.numel() - round(x.shape[0] * 16000 / sr)) <= 1
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


def test_normalize_is_fairseq_layer_norm():
    x = _tone(16000, 0.5) * 0.7 + 0.05
    data = _encode(x, 16000, "WAV", "FLOAT")
    got = audio.decode(data, normalize=True)
    raw = torch.from_numpy(x[:, 0])
    torch.testing.assert_close(got, F.layer_norm(raw, raw.shape), rtol=0, atol=1e-5)
    assert abs(float(got.mean())) < 1e-5 and abs(float(got.std(unbiased=False)) - 1) < 1e-3
    torch.testing.assert_close(audio.normalize(raw), F.layer_norm(raw, raw.shape))


def _truncated_wav() -> bytes:
    return _encode(_tone(16000, 1.0), 16000, "WAV", "PCM_16")[:3000]


def _nan_wav() -> bytes:
    x = _tone(16000, 0.2)
    x[100, 0] = np.nan
    return _encode(x, 16000, "WAV", "FLOAT")


def _inf_wav() -> bytes:
    x = _tone(16000, 0.2)
    x[5, 0] = np.inf
    return _encode(x, 16000, "WAV", "FLOAT")


@pytest.mark.parametrize("make,needle", [
    (lambda: b"", "empty"),
    (lambda: b"this is plain text pretending to be audio\n" * 5, "undecodable"),
    (lambda: _encode(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16"), "zero-length"),
    (_truncated_wav, "truncated"),
    (_nan_wav, "NaN"),
    (_inf_wav, "infinite"),
], ids=["empty", "text", "zero-frames", "lying-header", "nan", "inf"])
def test_bad_audio_raises_audio_error_naming_the_problem(make, needle):
    with pytest.raises(AudioError, match=needle):
        audio.decode(make())


def test_streaming_wav_header_is_accepted():
    """espeak-ng --stdout and pipes write a placeholder data size; that is not a lie to reject."""
    data = bytearray(_encode(_tone(16000, 0.3), 16000, "WAV", "PCM_16"))
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = (0x7FFFF000).to_bytes(4, "little")
    assert audio.decode(bytes(data)).numel() == 4800


def test_load_and_info_over_storage(storage_root):
    x = _tone(44100, 0.5, channels=2)
    url = storage.join(storage_root, "a/b.flac")
    storage.atomic_write(url, _encode(x, 44100, "FLAC", "PCM_24"))
    i = audio.info(url)
    assert (i.frames, i.sample_rate, i.channels) == (x.shape[0], 44100, 2)
    assert i.n_samples() == round(x.shape[0] * 16000 / 44100)
    wav = audio.load(url)
    assert wav.shape == (i.n_samples(),)
    ref = AF.resample(torch.from_numpy(sf.read(io.BytesIO(storage.read_bytes(url)),
                                               dtype="float32")[0].mean(axis=1)), 44100, 16000)
    torch.testing.assert_close(wav, ref, rtol=0, atol=1e-6)
    bad = storage.join(storage_root, "a/bad.wav")
    storage.atomic_write(bad, _truncated_wav())
    with pytest.raises(AudioError, match=r"bad\.wav: truncated"):
        audio.info(bad)
    with pytest.raises(AudioError, match=r"bad\.wav: truncated"):
        audio.load(bad)
    with pytest.raises(BadInput, match="not found"):
        audio.load(storage.join(storage_root, "missing.wav"))


def test_bad_target_rate_is_bad_input():
    with pytest.raises(BadInput, match="sample rate"):
        audio.decode(_encode(_tone(16000, 0.1), 16000, "WAV"), target_sr=0)
