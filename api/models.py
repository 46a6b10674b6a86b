"""Model lifecycle (KServe-like: load -> ready) and the batched forward pass the batcher calls.

``ModelService.load()`` reads the encoder (our trainer checkpoint or a transformers directory, via
``mhubert.model.load_model``) and the optional LID head from their configured URLs, then flips
``ready``. ``reload()`` builds a new bundle first and swaps it in, so the service stays ready.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from api.settings import Settings
from mhubert.errors import BadInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJob:
    """One request for the batcher. ``wav`` (S,) float32 at 16 kHz; ``layers`` absolute indices."""

    wav: Tensor
    layers: tuple[int, ...] = ()
    pool: bool = True
    lid: bool = False


@dataclass
class Bundle:
    """A loaded encoder (+ head) and what ``GET /v1/models`` reports about it."""

    model: Any
    head: Any | None
    labels: list[str]
    num_layers: int
    dim: int
    parameters: int
    source: str
    lid_source: str
    loaded_at: float


class ModelService:
    """Holds the current bundle; ``state`` is ``loading`` -> ``ready`` (or ``failed`` with ``error``)."""

    FRAME_RATE = 50  # Hz: 16 kHz audio / conv stride 320

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundle: Bundle | None = None
        self.state = "loading"
        self.error = ""
        self._lock = threading.Lock()
        self.device = _pick_device(settings.device)

    @property
    def ready(self) -> bool:
        return self.bundle is not None and self.state == "ready"

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one frame (the conv receptive field; 400 samples at base)."""
        return int(self.bundle.model.cfg.receptive_field) if self.bundle else 400

    def _build(self) -> Bundle:
        from mhubert.model import load_model

        s = self.settings
        if not s.model_uri:
            raise BadInput("no model configured (set --model or MHUBERT_MODEL_URI)")
        t0 = time.perf_counter()
        model = load_model(s.model_uri)
        head, labels = None, []
        if s.lid_uri:
            from mhubert.lid.head import load_head

            head, labels = load_head(s.lid_uri)
        bundle = self.make_bundle(model, head, labels, s.model_uri, s.lid_uri)
        log.info("loaded %s (%d layers, dim %d) in %.1f s", s.model_uri, bundle.num_layers, bundle.dim,
                 time.perf_counter() - t0)
        return bundle

    def make_bundle(self, model: Any, head: Any | None = None, labels: list[str] | None = None,
                    source: str = "", lid_source: str = "") -> Bundle:
        """Put an in-memory encoder (+ head) on the device, frozen and in eval mode."""
        model = model.eval().to(self.device)
        for p in model.parameters():
            p.requires_grad_(False)
        cfg = model.cfg
        if head is not None:
            head = head.eval().to(self.device)
            if head.cfg.num_layers != cfg.num_layers or head.cfg.dim != cfg.embed_dim:
                raise BadInput(f"LID head {lid_source} was trained for {head.cfg.num_layers} layers x "
                               f"{head.cfg.dim}, the model has {cfg.num_layers} x {cfg.embed_dim}")
        return Bundle(model=model, head=head, labels=list(labels or []), num_layers=cfg.num_layers,
                      dim=cfg.embed_dim, parameters=sum(p.numel() for p in model.parameters()),
                      source=source, lid_source=lid_source, loaded_at=time.time())

    def attach(self, bundle: Bundle) -> None:
        """Serve an already built bundle (tests, embedding the service in another program)."""
        self.bundle, self.state, self.error = bundle, "ready", ""

    def load(self) -> None:
        """Load the configured model; on failure ``state`` is ``failed`` and the error is kept."""
        with self._lock:
            try:
                self.bundle = self._build()
                self.state, self.error = "ready", ""
            except Exception as e:  # noqa: BLE001 - the readiness endpoint reports it
                log.exception("model load failed")
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
                raise

    def reload(self) -> Bundle:
        """Load the configured URLs again and swap the new bundle in (stays ready meanwhile)."""
        with self._lock:
            bundle = self._build()
            self.bundle, self.state, self.error = bundle, "ready", ""
            return bundle

    # -- batched inference (runs in the batcher's thread) ---------------------------------------

    def _autocast(self):
        dtype = self.settings.dtype
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype))

    def run_batch(self, jobs: list[EmbedJob]) -> list[Tensor]:
        """Forward ``jobs`` as one padded batch with lengths.

        Returns per job: (len(layers), D) pooled or (len(layers), T_i, D) frames; for LID jobs the
        class probabilities (C,). Padding is masked, so results do not depend on the batch.
        """
        bundle = self.bundle
        if bundle is None:
            raise RuntimeError("model is not loaded")
        lengths = torch.tensor([j.wav.numel() for j in jobs], dtype=torch.long)
        wav = torch.zeros(len(jobs), int(lengths.max()))
        for i, j in enumerate(jobs):
            wav[i, : j.wav.numel()] = j.wav
        wav, dev_lengths = wav.to(self.device), lengths.to(self.device)
        top = bundle.num_layers if any(j.lid for j in jobs) else max(max(j.layers) for j in jobs)
        with torch.inference_mode(), self._autocast():
            hidden = self._hidden(bundle.model, wav, dev_lengths, top)
            frames = bundle.model.frame_lengths(lengths).tolist()
            out: list[Tensor] = []
            pooled_all = None
            if any(j.lid for j in jobs):
                from mhubert.lid.head import mean_pool

                pooled_all = mean_pool([h.float() for h in hidden], torch.tensor(frames, device=self.device))
                probs = torch.softmax(bundle.head(pooled_all).float(), dim=-1) if bundle.head else None
            for i, j in enumerate(jobs):
                if j.lid:
                    out.append(probs[i].cpu())
                    continue
                x = torch.stack([hidden[k][i, : frames[i]] for k in j.layers]).float()  # (L', T, D)
                out.append((x.mean(dim=1) if j.pool else x).cpu())
        return out

    @staticmethod
    def _hidden(model: Any, wav: Tensor, lengths: Tensor, top: int) -> list[Tensor]:
        """Hidden states 0..top of a padded batch; layers above ``top`` are not run."""
        full = bool((lengths == wav.shape[1]).all())
        if top >= len(model.layers):
            return model.hidden_states(wav, None if full else lengths)
        feats, flen = model.extract_features(wav, None if full else lengths)
        return model.encode(model.project(feats), flen, num_layers=top, keep_all=True)


def normalize_vectors(x: Tensor) -> Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(x, p=2.0, dim=-1)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("device=cuda but no CUDA device is available")
    return torch.device(name)
