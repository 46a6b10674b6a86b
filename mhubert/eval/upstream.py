"""Frozen upstreams and their cached features.

An upstream is ``fbank`` (ML-SUPERB's baseline: 80-d log-mel filterbanks, 25 ms windows every 10 ms,
``torchaudio.compliance.kaldi.fbank``) or a HuBERT model: a transformers directory or a trainer
checkpoint (:func:`mhubert.model.load_model`), or a fairseq ``.pt`` (:func:`mhubert.model.load_fairseq`).

A model contributes all its hidden states as s3prl's HuBERT upstream does: the projected conv features
(the transformer's input, before the positional convolution), then every layer's output, i.e.
``num_layers + 1`` states. Features are computed once per utterance, unpadded, in eval mode without
gradients, and cached (float16) in one file per upstream under the cache directory. The probe holds
them all in memory: (num_layers + 1) x dim x 2 bytes per frame, i.e. 1 MB per second of audio for
HuBERT-base (13 x 768 at 50 Hz), so 10 min each of train, dev and test over 100 languages is ~180 GB;
at that scale pass fewer languages per run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchaudio.compliance.kaldi as kaldi
from tqdm import tqdm

from mhubert import audio, storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.model import HubertModel, load_fairseq, load_model

log = logging.getLogger(__name__)

FBANK = "fbank"
FBANK_DIM = 80
FBANK_RATE = 100.0     # frames per second (10 ms shift)


@dataclass
class Upstream:
    """A frozen feature extractor: ``extract(wav (S,)) -> (num_states, T, dim)``."""

    uri: str
    frame_rate: float
    num_states: int
    dim: int
    extract: Callable[[torch.Tensor], torch.Tensor]

    @property
    def name(self) -> str:
        """``fbank``, or the last three parts of the URI (``iter3/train/model``)."""
        return FBANK if self.uri == FBANK else "/".join(self.uri.rstrip("/").split("/")[-3:])

    @property
    def cache_key(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name)[:40]
        return f"{slug}-{hashlib.sha1(self.uri.encode()).hexdigest()[:12]}"


def fbank(wav: torch.Tensor) -> torch.Tensor:
    """(S,) float audio in [-1, 1] at 16 kHz -> (1, T, 80) log-mel filterbanks (Kaldi defaults, no
    dither; the 16-bit scale Kaldi expects)."""
    feats = kaldi.fbank(wav[None].float() * 32768.0, num_mel_bins=FBANK_DIM,
                        sample_frequency=SAMPLE_RATE, dither=0.0)
    return feats[None]


def model_states(model: HubertModel, wav: torch.Tensor) -> torch.Tensor:
    """(S,) -> (num_layers + 1, T, D): projected conv features, then each layer's output."""
    with torch.inference_mode():
        param = next(model.parameters())
        x = wav[None].to(device=param.device, dtype=param.dtype)
        feats, _ = model.extract_features(x, None)
        proj = model.project(feats)
        layers = model.encode(proj, None, keep_all=True)[1:]
        return torch.cat([proj, *layers], dim=0).float().cpu()


def _load_encoder(uri: str) -> HubertModel:
    if uri.endswith((".pt", ".pth", ".ckpt")):
        try:
            return load_model(uri)
        except BadInput as ours:
            try:
                return load_fairseq(uri).encoder.eval()
            except BadInput as theirs:
                raise BadInput(f"{uri} is neither a checkpoint of ours ({ours}) nor a fairseq HuBERT "
                               f"checkpoint ({theirs})") from theirs
    return load_model(uri)


def _hf_normalize(uri: str) -> bool:
    """transformers' ``do_normalize`` from preprocessor_config.json; True (our pretraining) without it."""
    url = storage.join(uri, "preprocessor_config.json")
    if uri.endswith((".pt", ".pth", ".ckpt")) or not storage.exists(url):
        return True
    return bool(json.loads(storage.read_text(url)).get("do_normalize", True))


def load_upstream(uri: str, device: str | torch.device = "cpu") -> Upstream:
    """``fbank`` or a model URI -> :class:`Upstream`."""
    if not uri:
        raise BadInput("--model is empty")
    if uri == FBANK:
        return Upstream(FBANK, FBANK_RATE, 1, FBANK_DIM, fbank)
    model = _load_encoder(uri).to(device).eval()
    normalize = _hf_normalize(uri)

    def extract(wav: torch.Tensor) -> torch.Tensor:
        if wav.numel() < model.cfg.receptive_field:
            raise BadInput(f"utterance of {wav.numel()} samples is shorter than {uri}'s receptive field")
        return model_states(model, audio.normalize(wav) if normalize else wav)

    cfg = model.cfg
    return Upstream(uri, SAMPLE_RATE / cfg.total_stride, cfg.num_layers + 1, cfg.embed_dim, extract)


def cached_features(up: Upstream, urls: Sequence[str], cache_dir: str) -> list[torch.Tensor]:
    """Features (num_states, T, dim) float16 of each audio URL; computed once, kept in
    ``<cache_dir>/<upstream key>.pt`` (rewritten atomically when new utterances were added)."""
    cache_url = storage.join(cache_dir, up.cache_key + ".pt")
    cache: dict[str, torch.Tensor] = {}
    if storage.exists(cache_url):
        blob = torch.load(io.BytesIO(storage.read_bytes(cache_url)), map_location="cpu", weights_only=True)
        if blob.get("uri") == up.uri:
            cache = blob["features"]
    missing = [u for u in dict.fromkeys(urls) if u not in cache]
    for u in tqdm(missing, desc=f"features {up.name}", unit="utt", disable=len(missing) < 50):
        feats = up.extract(audio.load(u, target_sr=SAMPLE_RATE))
        if feats.dim() != 3 or feats.shape[0] != up.num_states or feats.shape[2] != up.dim:
            raise BadInput(f"{up.uri} gave features of shape {tuple(feats.shape)} for {u}")
        cache[u] = feats.to(torch.float16).contiguous()
    if missing:
        with storage.atomic_open(cache_url) as f:
            torch.save({"uri": up.uri, "features": cache}, f)
        log.info("cached %s features of %d new utterances in %s", up.name, len(missing), cache_url)
    return [cache[u] for u in urls]
