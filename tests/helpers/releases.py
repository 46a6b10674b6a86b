"""Corpus releases written from the espeak-ng test corpus (``<root>/<dataset>/<lang>/*.wav``), laid
out as the datasets publish them, to local paths or S3."""

from __future__ import annotations

import os

import soundfile as sf

from mhubert import storage

# FLEURS folder names of the espeak-ng corpus's languages (tests/conftest.py SYNTH_LANGUAGES)
FLEURS_DIRS = {"en": "en_us", "de": "de_de", "fr": "fr_fr", "es": "es_419", "fi": "fi_fi", "sw": "sw_ke",
               "tr": "tr_tr", "ru": "ru_ru"}
MISSING = "missing.wav"  # the clip of a row that the release lacks (en only)


def write_fleurs(corpus_root: str, dataset: str, src: str) -> dict[str, tuple[str, int]]:
    """``<corpus_root>/<dataset>/<lang>/*.wav`` as a FLEURS release at ``src`` (headerless
    ``<lang_REGION>/train.tsv``: id, file, raw text, text, phonemes, num_samples, gender; clips under
    ``audio/train/``), plus one ``en`` row naming a clip that is not there. Returns {clip URL:
    (language, samples as soundfile reads them)} of the rows an import must keep."""
    kept: dict[str, tuple[str, int]] = {}
    for lang, folder in FLEURS_DIRS.items():
        d = os.path.join(corpus_root, dataset, lang)
        rows = []
        for i, name in enumerate(sorted(f for f in os.listdir(d) if f.endswith(".wav"))):
            n = sf.info(os.path.join(d, name)).frames
            url = storage.join(src, folder, "audio", "train", name)
            with open(os.path.join(d, name), "rb") as f:
                storage.atomic_write(url, f.read())
            rows.append([str(1000 + i), name, f"utterance {i}", f"utterance {i}", "u t", str(n), "FEMALE"])
            kept[url] = (lang, n)
        if lang == "en":
            rows.append(["1999", MISSING, "gone", "gone", "g", "48000", "MALE"])
        storage.atomic_write(storage.join(src, folder, "train.tsv"),
                             ("\n".join("\t".join(r) for r in rows) + "\n").encode())
    return kept
