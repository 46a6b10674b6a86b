"""Small corpora the tests write straight to any storage URL (no tests here)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from mhubert import storage
from mhubert.constants import SAMPLE_RATE


def write_tone_corpus(root: str) -> None:
    """6 short tone utterances (2-3.25 s), 2 datasets x 3 languages, under ``<root>/audio/<ds>/<lang>/``."""
    rng = np.random.default_rng(0)
    for i in range(6):
        n = SAMPLE_RATE * 2 + 4000 * i
        t = np.arange(n) / SAMPLE_RATE
        wav = 0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + 0.05 * rng.standard_normal(n)
        buf = io.BytesIO()
        sf.write(buf, wav.astype(np.float32), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        storage.atomic_write(f"{root}/audio/ds{i % 2}/{('en', 'de', 'fr')[i % 3]}/u{i}.wav", buf.getvalue())
