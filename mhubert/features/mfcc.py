"""39-d MFCC targets of HuBERT's first iteration (fairseq ``dump_mfcc_feature.py``), 100 Hz.

Kaldi MFCC (13 ceps, 23 mel bins, 25 ms povey window, 10 ms shift, pre-emphasis 0.97, lifter 22,
no dither, ``snip_edges``, ``use_energy=False``) on float audio in [-1, 1], then Δ and ΔΔ
(``compute_deltas``, window 5, edge replication): frames = 1 + (samples - 400) // 160.

:func:`mfcc` calls torchaudio exactly as fairseq does; :func:`mfcc_batch` computes the same numbers
for many utterances at once (one framing, one rfft, one mel and one DCT matmul over all frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

WINDOW = 400          # 25 ms
HOP = 160             # 10 ms
FRAME_RATE = SAMPLE_RATE // HOP   # 100 frames (= iteration-1 labels) a second
N_FFT = 512           # window rounded up to a power of two
NUM_MEL = 23
NUM_CEPS = 13
LIFTER = 22.0
PREEMPH = 0.97
DIM = 3 * NUM_CEPS


def num_frames(n_samples: int) -> int:
    """Frames Kaldi (snip_edges) makes from ``n_samples``; 0 when shorter than one window."""
    return 0 if n_samples < WINDOW else 1 + (n_samples - WINDOW) // HOP


def _prepare(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor):
        raise BadInput(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.dim() != 1:
        raise BadInput(f"waveform must be 1-D (samples,), got shape {tuple(waveform.shape)}")
    if sample_rate <= 0:
        raise BadInput(f"sample_rate must be positive, got {sample_rate}")
    x = waveform.detach().to(torch.float32).cpu()
    if sample_rate != SAMPLE_RATE:
        x = AF.resample(x, sample_rate, SAMPLE_RATE)
    return x


def mfcc(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(samples,) float in [-1, 1] -> (frames, 39) float32 [mfcc, Δ, ΔΔ] at 100 Hz.

    Audio at another rate is resampled to 16 kHz first, so frames always follow 16 kHz samples.
    """
    x = _prepare(waveform, sample_rate)
    if x.numel() < WINDOW:
        return torch.zeros(0, DIM)
    with torch.no_grad():
        m = kaldi.mfcc(x.unsqueeze(0), sample_frequency=SAMPLE_RATE, use_energy=False).T
        d = AF.compute_deltas(m)
        dd = AF.compute_deltas(d)
        return torch.cat([m, d, dd], dim=0).T.contiguous()


@lru_cache(maxsize=1)
def _constants() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(povey window (400,), mel banks repeated for (re, im) (514, 23), DCT (23, 13), lifter (13,))."""
    window = torch.hann_window(WINDOW, periodic=False, dtype=torch.float32).pow(0.85)
    banks, _ = kaldi.get_mel_banks(NUM_MEL, N_FFT, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0)
    banks = F.pad(banks.to(torch.float32), (0, 1)).T.repeat_interleave(2, dim=0).contiguous()
    dct = AF.create_dct(NUM_MEL, NUM_MEL, "ortho")
    dct[:, 0] = math.sqrt(1.0 / NUM_MEL)
    lifter = 1.0 + 0.5 * LIFTER * torch.sin(math.pi * torch.arange(NUM_CEPS) / LIFTER)
    return window, banks, dct[:, :NUM_CEPS].contiguous(), lifter.to(torch.float32)


def _deltas(x: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """compute_deltas (window 5, replicate edges) of concatenated utterances.

    x: (T, C) all frames; start/end: (T,) first and last frame index of each frame's utterance."""
    t = torch.arange(x.shape[0])
    out = torch.zeros_like(x)
    for n in (1, 2):
        fwd = torch.minimum(t + n, end)
        bwd = torch.maximum(t - n, start)
        out += n * (x[fwd] - x[bwd])
    return out / 10.0


def _mfcc_frames(parts: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Framed utterances (views (T_i, 400) of raw audio, sum T_i = n) -> (n, 13) liftered cepstra."""
    window, banks2, dct, lifter = _constants()
    eps = torch.finfo(torch.float32).eps
    # Same operations in the same order as Kaldi/torchaudio up to the FFT: low mel bins of quiet
    # frames come from heavy cancellation there, so 1-ulp input differences would show as 1e-3
    # in the cepstra. Written straight from the strided views into one zero-padded buffer
    # (rfft of a padded buffer is ~2x faster than rfft(n=N_FFT)).
    buf = torch.zeros(n, N_FFT)
    pos = 0
    for f in parts:
        c = f - f.mean(dim=1, keepdim=True)
        rows = buf[pos:pos + f.shape[0]]
        rows[:, 0] = c[:, 0] - PREEMPH * c[:, 0]
        # multiply, then subtract (sub(alpha=) fuses them and rounds differently)
        torch.sub(c[:, 1:], PREEMPH * c[:, :-1], out=rows[:, 1:WINDOW])
        pos += f.shape[0]
    buf[:, :WINDOW] *= window
    spec = torch.view_as_real(torch.fft.rfft(buf))               # (n, 257, 2)
    # |X|^2 @ banks as one matmul: re^2 and im^2 interleaved against each bank row twice.
    mel = spec.square_().reshape(n, -1) @ banks2
    # The DCT of ~23 log energies of similar size cancels heavily and the lifter then scales
    # c1..c12 by up to 12, so float32 rounding here is ~1e-3: keep Kaldi's order (matmul, then
    # lifter) so both paths round alike.
    return (mel.clamp_min_(eps).log_() @ dct).mul_(lifter)


def mfcc_batch(waveforms: Sequence[torch.Tensor], sample_rate: int = SAMPLE_RATE,
               chunk_frames: int = 32768) -> list[torch.Tensor]:
    """Batched :func:`mfcc`: list of (samples_i,) -> list of (frames_i, 39), within 1e-3 of it.

    All frames of all utterances are processed together, ``chunk_frames`` at a time (bounds memory:
    about 6 KiB per frame)."""
    xs = [_prepare(w, sample_rate) for w in waveforms]
    counts = [num_frames(x.numel()) for x in xs]
    total = sum(counts)
    if total == 0:
        return [torch.zeros(0, DIM) for _ in xs]
    with torch.no_grad():
        ceps = torch.empty(total, NUM_CEPS)
        pos, size = 0, 0
        buf: list[torch.Tensor] = []
        for x, c in zip(xs, counts, strict=True):
            if c == 0:
                continue
            f = x.unfold(0, WINDOW, HOP)
            for s in range(0, c, chunk_frames):
                part = f[s:s + chunk_frames]
                if size + part.shape[0] > chunk_frames and buf:
                    ceps[pos:pos + size] = _mfcc_frames(buf, size)
                    pos, size, buf = pos + size, 0, []
                buf.append(part)
                size += part.shape[0]
        if buf:
            ceps[pos:pos + size] = _mfcc_frames(buf, size)
        lengths = torch.tensor(counts)
        ends = torch.cumsum(lengths, 0)
        starts = ends - lengths
        start = torch.repeat_interleave(starts, lengths)
        end = torch.repeat_interleave(ends - 1, lengths)
        d = _deltas(ceps, start, end)
        dd = _deltas(d, start, end)
        feats = torch.cat([ceps, d, dd], dim=1)
    return [t.clone() for t in torch.split(feats, counts)]
