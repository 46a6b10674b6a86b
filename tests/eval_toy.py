"""A learnable toy corpus for the ML-SUPERB probe tests: one tone per character, two "languages" by
pitch range, words separated by longer silences, 4 speakers per language (level and a slight detune).

Written as real wav files (soundfile) with a manifest.tsv and its utterances.tsv sidecar."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

SR = 16000
ALPHABET = {"lo": {"A": 220.0, "B": 300.0, "C": 410.0, "D": 560.0},
            "hi": {"E": 1100.0, "F": 1500.0, "G": 2050.0, "H": 2800.0}}
TONE_S, GAP_S, SPACE_S = 0.08, 0.04, 0.12


def _utterance(rng: np.random.Generator, lang: str, speaker: int) -> tuple[np.ndarray, str]:
    chars = list(ALPHABET[lang])
    words = ["".join(rng.choice(chars, size=int(rng.integers(2, 4)))) for _ in range(int(rng.integers(1, 3)))]
    detune = 1.0 + 0.03 * (speaker - 1.5)
    level = 0.2 + 0.1 * speaker
    t = np.arange(int(TONE_S * SR)) / SR
    env = np.minimum(1.0, np.minimum(t, TONE_S - t) / 0.01)
    parts = [np.zeros(int(0.1 * SR))]
    for w, word in enumerate(words):
        if w:
            parts.append(np.zeros(int(SPACE_S * SR)))
        for c in word:
            f = ALPHABET[lang][c] * detune
            parts += [level * env * np.sin(2 * np.pi * f * t), np.zeros(int(GAP_S * SR))]
    parts.append(np.zeros(int(0.1 * SR)))
    x = np.concatenate(parts) + 0.003 * rng.standard_normal(sum(len(p) for p in parts))
    # the sidecar holds raw text: lower case and punctuation, which normalisation must undo
    return x.astype(np.float32), " ".join(words).lower() + "."


def make_toy_corpus(root: str, per_lang: int = 110, seed: int = 0) -> str:
    """Write ``<root>/audio/<lang>/*.wav``, ``<root>/manifest.tsv`` and ``<root>/utterances.tsv``;
    return the manifest path."""
    rng = np.random.default_rng(seed)
    rows, side = [], []
    for lang in ALPHABET:
        os.makedirs(os.path.join(root, "audio", lang), exist_ok=True)
        for i in range(per_lang):
            spk = i % 4
            x, text = _utterance(rng, lang, spk)
            rel = f"{lang}/{lang}_{i:04d}.wav"
            sf.write(os.path.join(root, "audio", rel), x, SR, subtype="PCM_16")
            rows.append(f"{rel}\t{len(x)}\t{lang}\ttoy")
            side.append(f"{rel}\t{lang}-spk{spk}\t{lang}\t{text}")
    with open(os.path.join(root, "manifest.tsv"), "w") as f:
        f.write(os.path.join(root, "audio") + "\n" + "\n".join(rows) + "\n")
    with open(os.path.join(root, "utterances.tsv"), "w") as f:
        f.write("path\tspeaker\tsource_lang\ttext\n" + "\n".join(side) + "\n")
    return os.path.join(root, "manifest.tsv")
