"""A learnable toy corpus for the data and trainer tests (imported by the other test_train/test_data
files): tones whose frequency class is the frame label, so labels are a deterministic function of
the audio. The tests here pin the corpus itself against the label/duration rule."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from mhubert import storage
from mhubert.artifacts import Labels, Manifest, ManifestEntry

SR = 16000
LANGS = ("en", "fr", "sw")
DATASETS = ("a", "b")


def tone_utterance(rng: np.random.Generator, n_samples: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(wav float32, class per sample): segments of 0.2-0.5 s, each a tone of 300*(c+1) Hz."""
    wav = np.zeros(n_samples, dtype=np.float32)
    cls = np.zeros(n_samples, dtype=np.int64)
    pos = 0
    while pos < n_samples:
        seg = int(rng.integers(3200, 8000))
        c = int(rng.integers(0, k))
        t = np.arange(min(seg, n_samples - pos)) / SR
        wav[pos:pos + len(t)] = 0.5 * np.sin(2 * np.pi * 300 * (c + 1) * t + rng.uniform(0, 6.28))
        cls[pos:pos + len(t)] = c
        pos += seg
    wav += rng.normal(0, 0.01, n_samples).astype(np.float32)
    return wav, cls


def make_toy_corpus(root: str, n: int = 12, k: int = 8, label_rate: int = 50, seed: int = 0,
                    min_samples: int = 24000, max_samples: int = 48000,
                    lengths: list[int] | None = None) -> dict:
    """Write wavs, ``manifest.tsv`` and a committed labels dir (clustering format) under ``root``."""
    rng = np.random.default_rng(seed)
    entries, flat, offsets = [], [], [0]
    for i in range(n):
        ns = int(lengths[i]) if lengths else int(rng.integers(min_samples, max_samples + 1))
        lang, ds = LANGS[i % len(LANGS)], DATASETS[(i // len(LANGS)) % len(DATASETS)]
        wav, cls = tone_utterance(rng, ns, k)
        buf = io.BytesIO()
        sf.write(buf, wav, SR, format="WAV", subtype="FLOAT")
        rel = f"{ds}/{lang}/u{i:03d}.wav"
        storage.atomic_write(storage.join(root, "audio", rel), buf.getvalue())
        entries.append(ManifestEntry(rel, ns, lang, ds))
        n_lab = ns * label_rate // SR
        centres = (np.arange(n_lab) * SR // label_rate).clip(max=ns - 1)
        flat.append(cls[centres].astype(np.uint16))
        offsets.append(offsets[-1] + n_lab)
    manifest = storage.join(root, "manifest.tsv")
    Manifest(storage.join(root, "audio"), entries).write(manifest)
    labels = storage.join(root, "labels")
    art = Labels(labels)
    for name, arr in (("labels.npy", np.concatenate(flat)), ("offsets.npy", np.array(offsets, np.int64))):
        b = io.BytesIO()
        np.save(b, arr)
        art.write_bytes(name, b.getvalue())
    art.write_text("dict.km.txt", "".join(f"{i} 1\n" for i in range(k)))
    art.commit({"num_clusters": k, "label_rate": label_rate},
               settings={"toy_corpus": {"n": n, "k": k, "seed": seed, "label_rate": label_rate,
                                         "lengths": lengths or [min_samples, max_samples]}})
    return {"root": root, "manifest": manifest, "labels": labels, "k": k}


def test_toy_corpus_round_trips(tmp_path):
    c = make_toy_corpus(str(tmp_path / "c"), n=3, lengths=[16000, 20000, 33000])
    m = Manifest.read(c["manifest"])
    assert [e.n_samples for e in m.entries] == [16000, 20000, 33000]
    wav, sr = sf.read(storage.local_path(m.url_of(2)))
    assert sr == SR and len(wav) == 33000
    offs = np.load(io.BytesIO(storage.read_bytes(storage.join(c["labels"], "offsets.npy"))))
    assert np.diff(offs).tolist() == [50, 62, 103]   # n * 50 // 16000
    assert Labels(c["labels"]).info["label_rate"] == 50
