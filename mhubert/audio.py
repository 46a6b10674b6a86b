"""Audio decoding: any soundfile format (wav/flac/ogg/mp3) from bytes or an fsspec URL, to 16 kHz mono.

Every failure (empty input, undecodable bytes, zero frames, NaN/inf samples, a header that promises
more frames than the file holds) raises :class:`mhubert.errors.AudioError` naming the problem.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
import torchaudio.functional.functional as _taf

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import AudioError, BadInput

# torchaudio's private kernel helpers, used to cache the kernel; plain AF.resample without them.
_CACHED_RESAMPLE = all(hasattr(_taf, n) for n in ("_get_sinc_resample_kernel",
                                                 "_apply_sinc_resample_kernel"))


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file, read without decoding the samples."""

    frames: int
    sample_rate: int
    channels: int
    format: str

    def n_samples(self, target_sr: int = SAMPLE_RATE) -> int:
        """Number of samples after resampling to ``target_sr``: round(frames * target_sr / sr)."""
        return int(round(self.frames * target_sr / self.sample_rate))


def _sf_message(e: Exception) -> str:
    return getattr(e, "error_string", None) or str(e)


def check_riff(head: bytes, total_size: int) -> None:
    """Raise AudioError when a RIFF/WAVE header declares more audio data than the file holds.

    ``head``: the first bytes of the file (64 KiB is plenty); ``total_size``: the file's size."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            if size == 0 or size >= 0x7FFF0000:  # streaming writers (espeak-ng --stdout, ffmpeg
                return                           # pipes) put a placeholder here
            have = total_size - (pos + 8)
            if size > have:
                raise AudioError(f"truncated audio: the WAV header declares {size} bytes of "
                                 f"samples but the file holds {max(have, 0)}")
            return
        pos += 8 + size + (size & 1)


def info_bytes(data: bytes) -> AudioInfo:
    """Header of encoded audio bytes; raises AudioError for empty, unreadable or truncated data."""
    if not data:
        raise AudioError("empty file (0 bytes)")
    check_riff(data[:65536], len(data))
    try:
        i = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"undecodable audio: {_sf_message(e)}") from e
    if i.samplerate <= 0:
        raise AudioError(f"invalid sample rate {i.samplerate}")
    if i.channels <= 0:
        raise AudioError(f"invalid channel count {i.channels}")
    # soundfile reports a huge frame count for streams whose length is unknown (e.g. some mp3/ogg).
    frames = int(i.frames)
    if frames <= 0 or frames >= 2**62:
        frames = _count_frames(data)
    if frames <= 0:
        raise AudioError("zero-length audio (no frames)")
    return AudioInfo(frames=frames, sample_rate=int(i.samplerate), channels=int(i.channels),
                     format=str(i.format))


def _count_frames(data: bytes) -> int:
    try:
        x, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"undecodable audio: {_sf_message(e)}") from e
    return int(x.shape[0])


def _read(data: bytes) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 array and its sample rate."""
    header = info_bytes(data)
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"undecodable audio: {_sf_message(e)}") from e
    if x.shape[0] == 0:
        raise AudioError("zero-length audio (no frames)")
    if header.frames < 2**62 and x.shape[0] < header.frames:
        raise AudioError(f"truncated audio: header says {header.frames} frames, "
                         f"only {x.shape[0]} decodable")
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    return x, int(sr)


def to_mono(x: torch.Tensor) -> torch.Tensor:
    """(frames, channels) -> (frames,) by averaging channels; (frames,) is returned unchanged."""
    return x.mean(dim=1) if x.dim() == 2 else x


@lru_cache(maxsize=32)
def _resample_kernel(orig_sr: int, target_sr: int) -> tuple[torch.Tensor, int]:
    gcd = math.gcd(orig_sr, target_sr)
    return _taf._get_sinc_resample_kernel(orig_sr, target_sr, gcd, 6, 0.99, "sinc_interp_hann",
                                          None, torch.device("cpu"), torch.float32)


def resample(wav: torch.Tensor, orig_sr: int, target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(samples,) at ``orig_sr`` -> (samples',) at ``target_sr``: torchaudio.functional.resample
    (defaults), with its kernel cached per rate pair (building it costs more than applying it)."""
    if orig_sr == target_sr:
        return wav
    if not _CACHED_RESAMPLE or wav.dtype != torch.float32 or wav.device.type != "cpu":
        return AF.resample(wav, orig_sr, target_sr)
    kernel, width = _resample_kernel(int(orig_sr), int(target_sr))
    return _taf._apply_sinc_resample_kernel(wav, orig_sr, target_sr,
                                            math.gcd(orig_sr, target_sr), kernel, width)


def normalize(wav: torch.Tensor) -> torch.Tensor:
    """fairseq ``normalize=True``: zero mean, unit variance over the whole waveform (layer_norm)."""
    with torch.no_grad():
        return F.layer_norm(wav, wav.shape)


def decode(data: bytes, target_sr: int = SAMPLE_RATE, normalize: bool = False) -> torch.Tensor:
    """Encoded audio bytes -> (samples,) float32 mono at ``target_sr``, values in [-1, 1] unless
    ``normalize``."""
    if target_sr <= 0:
        raise BadInput(f"target sample rate must be positive, got {target_sr}")
    x, sr = _read(data)
    wav = resample(to_mono(torch.from_numpy(x)), sr, target_sr).contiguous()
    if wav.numel() == 0:
        raise AudioError("audio is too short to resample (0 samples)")
    return _normalize(wav) if normalize else wav


_normalize = normalize


def load(url: str, target_sr: int = SAMPLE_RATE, normalize: bool = False) -> torch.Tensor:
    """Read ``url`` (any fsspec URL) and :func:`decode` it; errors name the URL."""
    data = storage.read_bytes(url)
    try:
        return decode(data, target_sr=target_sr, normalize=normalize)
    except AudioError as e:
        raise AudioError(f"{url}: {e}") from e


def info(url: str) -> AudioInfo:
    """Header of the file at ``url``. Reads only the first bytes when the format allows it."""
    fs, path = storage.get_fs(url)
    try:
        size = fs.size(path)
        if not size:
            raise AudioError(f"{url}: empty file (0 bytes)")
        with fs.open(path, "rb") as f:
            try:
                check_riff(f.read(65536), size)
            except AudioError as e:
                raise AudioError(f"{url}: {e}") from e
            f.seek(0)
            try:
                i = sf.info(f)
            except (sf.LibsndfileError, RuntimeError, TypeError):
                i = None
    except FileNotFoundError as e:
        raise BadInput(f"not found: {url}") from e
    if i is None or not (0 < i.frames < 2**62) or i.samplerate <= 0 or i.channels <= 0:
        try:
            return info_bytes(storage.read_bytes(url))
        except AudioError as e:
            raise AudioError(f"{url}: {e}") from e
    return AudioInfo(frames=int(i.frames), sample_rate=int(i.samplerate), channels=int(i.channels),
                     format=str(i.format))


def encode_wav(wav: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """(samples,) float in [-1, 1] -> 16-bit PCM wav bytes."""
    arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    buf = io.BytesIO()
    sf.write(buf, arr.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
