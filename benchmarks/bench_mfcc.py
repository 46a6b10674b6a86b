"""MFCC throughput: batched ``mfcc_batch`` vs per-utterance fairseq-style extraction.

Both run in this process on the same audio (default 12 minutes: 144 utterances of 2-8 s). The anchor
is fairseq's ``dump_mfcc_feature.py`` recipe, one ``torchaudio.compliance.kaldi.mfcc`` +
``compute_deltas`` call per utterance. Prints seconds, real-time factors and the speed-up, and the
max abs difference between the two.

    .venv/bin/python benchmarks/bench_mfcc.py [--minutes 12] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from mhubert.features.mfcc import mfcc, mfcc_batch


def make_audio(minutes: float, seed: int = 0) -> list[torch.Tensor]:
    """Utterances of 2-8 s (uniform) adding up to ``minutes``; speech-like noise in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    out, total = [], 0.0
    while total < minutes * 60:
        sec = 2.0 + 6.0 * float(torch.rand(1, generator=g))
        n = int(sec * 16000)
        env = torch.sin(torch.linspace(0, 20, n)).abs()
        out.append((0.2 * env * torch.randn(n, generator=g)).clamp(-1, 1))
        total += sec
    return out


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wavs = make_audio(args.minutes)
    seconds = sum(w.numel() for w in wavs) / 16000
    mfcc_batch(wavs[:4])
    mfcc(wavs[0])  # warm-up both paths
    t_ref = best_of(lambda: [mfcc(w) for w in wavs], args.repeats)
    t_ours = best_of(lambda: mfcc_batch(wavs), args.repeats)
    diff = max(float((a - mfcc(w)).abs().max()) for a, w in zip(mfcc_batch(wavs[:20]), wavs[:20],
                                                               strict=True))
    print(f"audio: {len(wavs)} utterances, {seconds / 60:.1f} min; torch threads {args.threads}")
    print(f"per-utterance (fairseq recipe): {t_ref:.2f} s  ({seconds / t_ref:.0f}x real time)")
    print(f"batched mfcc_batch:             {t_ours:.2f} s  ({seconds / t_ours:.0f}x real time)")
    print(f"speed-up: {t_ref / t_ours:.2f}x   max |diff| on 20 utterances: {diff:.2e}")


if __name__ == "__main__":
    main()
