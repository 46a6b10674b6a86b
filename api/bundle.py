"""What the service serves: one immutable :class:`Bundle` (encoder backend, LID head, units index) per load.

``load_bundle(settings)`` resolves the sources, loads them and checks that they fit together; a
request takes one bundle (``ModelService.snapshot()``) and keeps it to the end, so a reload never
changes the model under a running request.

Sources: ``--model`` is a model URI (trainer ``.pt``, transformers directory) or a serving bundle
(``mhubert.artifacts.ServingBundle``: ``model/``, ``lid/``, ``units/`` and ``registry.json``); explicit
``--lid``/``--index`` win over the bundle's. The units record (registry ``units`` or the index's own
marker: ``features.model``, ``features.layer``, ``dim``) must match the model the
units are computed with and ``--units-layer``; a plain index without a record is served with a
warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from api.backends import Backend, make_backend
from api.settings import Settings
from mhubert import storage
from mhubert.artifacts import Index, ServingBundle
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.lid.head import load_head
from mhubert.model import load_model, model_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Units:
    """A units index and the encoder (and layer) whose features it labels."""

    index: Any                # mhubert.clustering.index.ClusterIndex
    encoder: Backend
    model: Any                # the HubertModel behind ``encoder`` (frame lengths)
    layer: int
    exact: bool
    source: str
    model_source: str

    @property
    def num_clusters(self) -> int:
        return int(self.index.num_clusters)


@dataclass(frozen=True)
class Bundle:
    """A loaded encoder (+ head, + units index) and what ``GET /v1/models`` reports about it."""

    model: Any                # HubertModel (eval, frozen): config, frame lengths, the torch backend
    backend: Backend          # what runs the forward pass (torch, onnx, onnx-int8)
    head: Any | None
    labels: tuple[str, ...]
    units: Units | None
    num_layers: int
    dim: int
    parameters: int
    source: str
    lid_source: str
    loaded_at: float

    @property
    def frame_rate(self) -> float:
        """Frames per second, from the conv stack's total stride."""
        return SAMPLE_RATE / self.model.cfg.total_stride

    @property
    def receptive_field(self) -> int:
        """Shortest input (samples) that gives one frame."""
        return int(self.model.cfg.receptive_field)

    def num_frames(self, n_samples: int) -> int:
        return int(self.model.num_frames(n_samples))


@dataclass(frozen=True)
class Sources:
    model: str
    lid: str = ""
    index: str = ""
    units_layer: int | None = None
    units_model: str = ""
    units_record: dict | None = None


def resolve_sources(s: Settings) -> Sources:
    """The URLs to load: explicit settings, else a serving bundle's parts."""
    if not s.model_uri:
        raise BadInput("no model configured (set --model or MHUBERT_MODEL_URI)")
    model, lid, index, record = s.model_uri, s.lid_uri, s.index_uri, None
    if not model.endswith((".pt", ".pth", ".ckpt")) and storage.exists(
            storage.join(model, ServingBundle.REGISTRY)):
        sb = ServingBundle(model)
        reg = sb.registry()
        model = reg.get("model") or sb.model.url
        lid = lid or reg.get("lid") or ""
        units = reg.get("units") or {}
        if not index and units.get("index"):
            index, record = units["index"], units
        elif not index and storage.exists(sb.units_index.index_url):
            index = sb.units_index.url
    layer = s.units_layer if s.units_layer >= 0 else None
    return Sources(model, lid, index, layer, s.units_model, record)


def _index_urls(url: str) -> tuple[str, str | None, dict | None]:
    """(index file, centroids file or None, record or None) of an index file or Index directory."""
    if url.endswith((".faiss", ".index")):
        return url, None, None
    art = Index(url)
    record = None
    if art.is_committed():
        record = dict(art.info)
    return art.index_url, art.centroids_url, record


def _recorded(record: dict | None) -> tuple[str, int | None, str]:
    """(model URL, layer, model digest) recorded for an index ('' / None when not recorded)."""
    if not record:
        return "", None, ""
    feats = record.get("features") or {}
    model = record.get("model") or feats.get("model") or ""
    layer = record.get("layer", feats.get("layer"))
    return str(model or ""), (int(layer) if layer is not None else None), str(record.get("model_digest", ""))


def load_units(src: Sources, model: Any, model_url: str, settings: Settings, device: torch.device) -> Units:
    """Load the index, pick its encoder and layer, and refuse what does not fit (BadInput)."""
    from mhubert.clustering.index import load as load_index  # faiss: only when an index is served

    index_url, centroids_url, record = _index_urls(src.index)
    record = src.units_record or record
    ci = load_index(index_url, centroids_url)
    units_url = src.units_model or model_url
    umodel = model if units_url == model_url else freeze(load_model(units_url), device)
    rec_model, rec_layer, rec_digest = _recorded(record)
    layer = src.units_layer if src.units_layer is not None else rec_layer
    if layer is None:
        raise BadInput(f"index {src.index} records no layer: pass --units-layer L (the layer its "
                       "features came from)")
    if not 0 <= layer <= umodel.cfg.num_layers:
        raise BadInput(f"--units-layer {layer} is out of range: {units_url} has hidden states "
                       f"0..{umodel.cfg.num_layers}")
    if ci.dim != umodel.cfg.embed_dim:
        raise BadInput(f"index {src.index} is {ci.dim}-d but {units_url} gives {umodel.cfg.embed_dim}-d "
                       "features: it was fit on another model")
    if record is None:
        log.warning("index %s has no record of the model and layer it was fit on: serving it for "
                    "layer %d of %s unchecked", src.index, layer, units_url)
    else:
        if rec_layer is not None and rec_layer != layer:
            raise BadInput(f"index {src.index} was fit on layer {rec_layer}, not --units-layer {layer}")
        if rec_digest and rec_digest != model_digest(umodel):
            raise BadInput(f"index {src.index} was fit on another model's features (its recorded model "
                           f"digest differs from {units_url})")
        if not rec_digest and rec_model and rec_model.rstrip("/") != units_url.rstrip("/"):
            raise BadInput(f"index {src.index} was fit on {rec_model}, not on {units_url} (pass "
                           "--units-model with the model it was fit on)")
    backend = make_backend("torch", umodel, device, settings.dtype) if umodel is not model else None
    return Units(index=ci, encoder=backend, model=umodel, layer=layer, exact=settings.units_exact,
                 source=src.index, model_source=units_url)


def freeze(model: Any, device: torch.device) -> Any:
    """Eval mode, on the device, no gradients."""
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_bundle(model: Any, settings: Settings, device: torch.device, head: Any | None = None,
                labels: list[str] | None = None, source: str = "", lid_source: str = "",
                units: Units | None = None) -> Bundle:
    """Put an in-memory encoder (+ head, + units) on the device and check they fit together."""
    model = freeze(model, device)
    cfg = model.cfg
    if head is not None:
        head = head.eval().to(device)
        if head.cfg.num_layers != cfg.num_layers or head.cfg.dim != cfg.embed_dim:
            raise BadInput(f"LID head {lid_source} was trained for {head.cfg.num_layers} layers x "
                           f"{head.cfg.dim}, the model has {cfg.num_layers} x {cfg.embed_dim}")
    backend = make_backend(settings.backend, model, device, settings.dtype, settings.num_threads)
    if units is not None and units.encoder is None:  # units from the served model: share its backend
        units = Units(index=units.index, encoder=backend, model=model, layer=units.layer, exact=units.exact,
                      source=units.source, model_source=units.model_source)
    return Bundle(model=model, backend=backend, head=head, labels=tuple(labels or ()), units=units,
                  num_layers=cfg.num_layers, dim=cfg.embed_dim,
                  parameters=sum(p.numel() for p in model.parameters()), source=source,
                  lid_source=lid_source, loaded_at=time.time())


def load_bundle(settings: Settings, device: torch.device) -> Bundle:
    """Load everything ``settings`` names; BadInput (or the loader's error) when something is wrong."""
    t0 = time.perf_counter()
    src = resolve_sources(settings)
    model = freeze(load_model(src.model), device)
    head, labels = None, []
    if src.lid:
        head, labels = load_head(src.lid)
    units = load_units(src, model, src.model, settings, device) if src.index else None
    bundle = make_bundle(model, settings, device, head, labels, src.model, src.lid, units)
    log.info("loaded %s (%d layers, dim %d, %s backend) in %.1f s", src.model, bundle.num_layers,
             bundle.dim, settings.backend, time.perf_counter() - t0)
    return bundle
