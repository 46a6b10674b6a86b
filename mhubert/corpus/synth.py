"""A deterministic multilingual demo corpus spoken by espeak-ng.

Layout: ``<root>/<dataset>/<lang>/<lang>_<dataset>_<i>.wav`` (16 kHz mono 16-bit), plus
``<root>/transcripts.tsv``, ``<root>/utterances.tsv`` (the corpus sidecar: path, speaker = the
espeak-ng voice, source_lang, text; ``import --format dir`` carries it into the corpus artifact)
and ``<root>/_SUCCESS`` (written last). Sentences are 4-12 random words
from short per-language lists. Two "datasets" differ in recording conditions:

- ``studio``: male voice variants, moderate speed and pitch, clean;
- ``field``: female/other variants, faster and more varied prosody, background noise and a little
  reverberation.

Amounts are deliberately uneven across languages and datasets so that up-sampling matters. The same
seed gives the same bytes (espeak-ng is deterministic; all randomness comes from ``seed``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from mhubert import storage
from mhubert.audio import SAMPLE_RATE, decode, encode_wav
from mhubert.corpus.report import SIDECAR, utterances_text
from mhubert.errors import BadInput, MhubertError

log = logging.getLogger(__name__)

# Short word lists (everyday words; spelled as each language writes them).
WORDS: dict[str, list[str]] = {
    "en": "the house water morning children window little because through weather garden "
          "yesterday people thought should bright kitchen brother strength village quickly "
          "nothing world music always".split(),
    "de": "das Haus Wasser Morgen Kinder Fenster klein weil durch Wetter Garten gestern Leute "
          "dachte sollte hell Küche Bruder Stärke Dorf schnell nichts Welt Mädchen zwölf".split(),
    "fr": "la maison eau matin enfants fenêtre petit parce que temps jardin hier gens pensait "
          "devrait clair cuisine frère village vite rien monde musique heureux toujours".split(),
    "es": "la casa agua mañana niños ventana pequeño porque tiempo jardín ayer gente pensaba "
          "debería claro cocina hermano fuerza pueblo rápido nada mundo música siempre".split(),
    "it": "la casa acqua mattina bambini finestra piccolo perché tempo giardino ieri gente "
          "pensava dovrebbe chiaro cucina fratello forza paese presto niente mondo musica "
          "sempre".split(),
    "fi": "talo vesi aamu lapset ikkuna pieni koska sää puutarha eilen ihmiset ajatteli pitäisi "
          "kirkas keittiö veli voima kylä nopeasti ei mitään maailma musiikki aina hyvää".split(),
    "sw": "nyumba maji asubuhi watoto dirisha kidogo kwa sababu hali ya hewa bustani jana watu "
          "alifikiri lazima mkali jikoni kaka nguvu kijiji haraka hakuna dunia muziki "
          "daima".split(),
    "tr": "ev su sabah çocuklar pencere küçük çünkü hava bahçe dün insanlar düşündü gerekir "
          "parlak mutfak kardeş güç köy çabuk hiçbir şey dünya müzik her zaman güzel".split(),
    "hi": "घर पानी सुबह बच्चे खिड़की छोटा क्योंकि मौसम बगीचा कल लोग सोचा चाहिए उजला रसोई "
          "भाई ताकत गाँव जल्दी कुछ नहीं दुनिया संगीत हमेशा".split(),
    "ru": "дом вода утро дети окно маленький потому что погода сад вчера люди думал должен "
          "яркий кухня брат сила деревня быстро ничего мир музыка всегда".split(),
}
LANGUAGES = list(WORDS)

# Relative amount of speech per language (a steep, realistic-looking imbalance).
LANG_WEIGHT = {"en": 1.8, "de": 1.3, "fr": 1.1, "es": 1.0, "it": 0.7, "fi": 0.5, "sw": 0.3,
               "tr": 0.8, "hi": 0.4, "ru": 0.9}


@dataclass(frozen=True)
class DatasetStyle:
    """Recording conditions of one synthetic dataset."""

    name: str
    variants: tuple[str, ...]
    speed: tuple[int, int]        # espeak-ng words per minute, inclusive range
    pitch: tuple[int, int]        # espeak-ng pitch 0-99
    weight: float                 # relative amount
    snr_db: float | None = None   # additive noise, None: clean
    reverb_s: float = 0.0         # length of the exponential-decay impulse response


DATASETS = (
    DatasetStyle("studio", ("m1", "m3", "m7"), (140, 165), (35, 55), 1.0),
    DatasetStyle("field", ("f2", "f4", "m2"), (165, 200), (45, 85), 0.55, snr_db=18.0,
                 reverb_s=0.12),
)


@dataclass(frozen=True)
class Utterance:
    dataset: str
    lang: str
    index: int
    text: str
    voice: str
    speed: int
    pitch: int

    @property
    def path(self) -> str:
        return f"{self.dataset}/{self.lang}/{self.lang}_{self.dataset}_{self.index:05d}.wav"


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """An RNG that depends only on ``seed`` and ``parts`` (not on scheduling order)."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def plan(languages: Sequence[str], utterances: int, seed: int) -> list[Utterance]:
    """What to say: uneven counts averaging about ``utterances`` per (lang, dataset), scaled by
    language and dataset weights (at least 2 each)."""
    tilts = {(d.name, lang): 0.6 + 0.8 * _rng(seed, "tilt", d.name, lang).random()
             for d in DATASETS for lang in languages}
    # Dataset balance also varies by language, so p_{d|l} differs between languages.
    w = {(d.name, lang): LANG_WEIGHT[lang] * d.weight * tilts[(d.name, lang)]
         for d in DATASETS for lang in languages}
    mean = sum(w.values()) / len(w)
    out = []
    for d in DATASETS:
        for lang in languages:
            n = max(2, round(utterances * w[(d.name, lang)] / mean))
            for i in range(n):
                r = _rng(seed, d.name, lang, i)
                words = r.choice(WORDS[lang], size=int(r.integers(4, 13)))
                out.append(Utterance(
                    d.name, lang, i, " ".join(words),
                    f"{lang}+{d.variants[int(r.integers(len(d.variants)))]}",
                    int(r.integers(d.speed[0], d.speed[1] + 1)),
                    int(r.integers(d.pitch[0], d.pitch[1] + 1))))
    return out


def _espeak(u: Utterance) -> bytes:
    cmd = ["espeak-ng", "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch), "--stdout", u.text]
    try:
        res = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    except subprocess.CalledProcessError as e:
        raise MhubertError(f"espeak-ng failed for {u.path}: {e.stderr.decode(errors='replace')}") from e
    return res.stdout


def _condition(wav: torch.Tensor, u: Utterance, style: DatasetStyle, seed: int,
               min_seconds: float, max_seconds: float) -> torch.Tensor:
    """Pad/trim to [min_seconds, max_seconds], add reverb and noise as the dataset style says."""
    r = _rng(seed, "cond", u.path)
    lead = int(r.uniform(0.05, 0.3) * SAMPLE_RATE)
    x = torch.cat([torch.zeros(lead), wav])
    lo, hi = int(min_seconds * SAMPLE_RATE), int(max_seconds * SAMPLE_RATE)
    if x.numel() < lo:
        x = torch.cat([x, torch.zeros(lo - x.numel() + int(0.1 * SAMPLE_RATE))])
    if x.numel() > hi:
        x = x[:hi].clone()
        fade = min(800, hi)
        x[-fade:] *= torch.linspace(1.0, 0.0, fade)
    if style.reverb_s > 0:
        n = int(style.reverb_s * SAMPLE_RATE)
        t = torch.arange(n, dtype=torch.float32) / SAMPLE_RATE
        ir = torch.from_numpy(r.standard_normal(n).astype(np.float32)) * torch.exp(-t / (style.reverb_s / 5))
        ir[0] = 1.0 / 0.3
        ir = ir * 0.3
        x = AF.fftconvolve(x, ir)[: x.numel()]
    if style.snr_db is not None:
        noise = torch.from_numpy(r.standard_normal(x.numel()).astype(np.float32))
        p_sig = x.pow(2).mean().clamp_min(1e-10)
        x = x + noise * torch.sqrt(p_sig / 10 ** (style.snr_db / 10))
    peak = x.abs().max().clamp_min(1e-6)
    return x * (0.9 / peak) if peak > 0.9 else x


def _render(u: Utterance, seed: int, min_seconds: float, max_seconds: float) -> bytes:
    style = next(d for d in DATASETS if d.name == u.dataset)
    wav = decode(_espeak(u), target_sr=SAMPLE_RATE)
    return encode_wav(_condition(wav, u, style, seed, min_seconds, max_seconds))


def synthesize(root_url: str, languages: Sequence[str] | None = None, utterances: int = 25,
               seed: int = 0, min_seconds: float = 2.0, max_seconds: float = 6.0,
               workers: int = 4) -> list[Utterance]:
    """Speak the corpus into ``root_url`` (any fsspec URL); returns what was written."""
    if shutil.which("espeak-ng") is None:
        raise MhubertError("espeak-ng is not installed (apt-get install espeak-ng)")
    languages = list(languages or LANGUAGES)
    unknown = [lang for lang in languages if lang not in WORDS]
    if unknown:
        raise BadInput(f"unsupported languages {unknown}; choose from {LANGUAGES}")
    if len(set(languages)) != len(languages):
        raise BadInput(f"duplicate languages in {languages}")
    if utterances < 1:
        raise BadInput(f"--utterances must be >= 1, got {utterances}")
    if not 0 < min_seconds < max_seconds:
        raise BadInput(f"bad duration range [{min_seconds}, {max_seconds}] s")
    items = plan(languages, utterances, seed)
    storage.remove(storage.join(root_url, storage.SUCCESS))

    def work(u: Utterance) -> None:
        storage.atomic_write(storage.join(root_url, u.path),
                             _render(u, seed, min_seconds, max_seconds))

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small jobs: parallelism comes from the pool
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            list(ex.map(work, items))
    finally:
        torch.set_num_threads(torch_threads)
    lines = "".join(f"{u.path}\t{u.lang}\t{u.dataset}\t{u.voice}\t{u.speed}\t{u.pitch}\t{u.text}\n"
                    for u in items)
    storage.atomic_write_text(storage.join(root_url, "transcripts.tsv"),
                              "path\tlang\tdataset\tvoice\tspeed\tpitch\ttext\n" + lines)
    storage.atomic_write_text(storage.join(root_url, SIDECAR), utterances_text(
        (u.path, u.voice, u.lang, u.text) for u in items))
    storage.write_marker(root_url, {"seed": seed, "languages": languages,
                                    "datasets": [d.name for d in DATASETS],
                                    "utterances": len(items)})
    log.info("synthesized %d utterances in %d languages into %s", len(items), len(languages),
             root_url)
    return items
