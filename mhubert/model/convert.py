"""Checkpoint conversion: transformers directories, trainer checkpoints, and :func:`load_model` /
:func:`load_pretrain_model`, which also take fairseq HuBERT checkpoints (:mod:`mhubert.model.fairseq`).

All are renamings of the same tensors (:data:`HF_RENAMES`, ``fairseq.FAIRSEQ_RENAMES``); every
path is an fsspec URL (remote files are downloaded to a temporary directory first).
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import tempfile
from typing import Any

import torch

from mhubert import storage
from mhubert.artifacts import Model, TrainRun
from mhubert.artifacts.marker import read as read_marker
from mhubert.errors import BadInput
from mhubert.model.config import HubertConfig
from mhubert.model.fairseq import is_fairseq, load_fairseq, read_checkpoint
from mhubert.model.hubert import HubertModel, HubertPretrainModel
from mhubert.model.state import load_into, strip_prefixes

log = logging.getLogger(__name__)

# (our prefix, transformers HubertModel prefix); the remaining key names are identical.
HF_RENAMES: list[tuple[str, str]] = [
    ("feature_norm.", "feature_projection.layer_norm."),
    ("feature_proj.", "feature_projection.projection."),
    ("mask_emb", "masked_spec_embed"),
    ("pos_conv.", "encoder.pos_conv_embed."),
    ("encoder_norm.", "encoder.layer_norm."),
    ("layers.", "encoder.layers."),
    ("feature_extractor.", "feature_extractor."),
]

_OLD_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
                    "weight_v": "parametrizations.weight.original1"}


# -- transformers ------------------------------------------------------------------------------
def to_hf_state_dict(model: HubertModel) -> dict[str, torch.Tensor]:
    """Our encoder state_dict under transformers' ``HubertModel`` names."""
    out = {}
    for k, v in model.state_dict().items():
        for ours, theirs in HF_RENAMES:
            if k.startswith(ours):
                out[theirs + k[len(ours):]] = v
                break
        else:
            raise AssertionError(f"no transformers name for {k}")
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``HubertModel`` (or ``hubert.``-prefixed head model) state_dict -> ours."""
    out = {}
    for k, v in sd.items():
        if k.startswith("hubert."):
            k = k[len("hubert."):]
        elif not k.startswith(("feature_", "encoder.", "masked_spec_embed")):
            continue  # a task head (lm_head, projector, ...)
        for old, new in _OLD_WEIGHT_NORM.items():
            if k.endswith("pos_conv_embed.conv." + old):
                k = k[: -len(old)] + new
        for ours, theirs in sorted(HF_RENAMES, key=lambda r: -len(r[1])):
            if k.startswith(theirs):
                out[ours + k[len(theirs):]] = v
                break
        else:
            raise BadInput(f"unexpected transformers parameter {k!r}")
    return out


def hf_config_dict(cfg: HubertConfig) -> dict[str, Any]:
    """The fields of a transformers ``HubertConfig`` for ``cfg``."""
    return {
        "architectures": ["HubertModel"], "model_type": "hubert",
        "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.ffn_dim,
        "hidden_act": "gelu", "feat_extract_activation": "gelu",
        "hidden_dropout": cfg.dropout, "activation_dropout": cfg.activation_dropout,
        "attention_dropout": cfg.attention_dropout, "feat_proj_dropout": cfg.dropout_input,
        "feat_proj_layer_norm": True, "final_dropout": 0.0, "layerdrop": cfg.layerdrop,
        "layer_norm_eps": 1e-5, "initializer_range": 0.02,
        "feat_extract_norm": "group" if cfg.extractor_mode == "default" else "layer",
        "conv_dim": [c for c, _, _ in cfg.conv_layers],
        "conv_kernel": [k for _, k, _ in cfg.conv_layers],
        "conv_stride": [s for _, _, s in cfg.conv_layers],
        "conv_bias": cfg.conv_bias, "num_feat_extract_layers": len(cfg.conv_layers),
        "num_conv_pos_embeddings": cfg.conv_pos, "num_conv_pos_embedding_groups": cfg.conv_pos_groups,
        "conv_pos_batch_norm": False, "do_stable_layer_norm": cfg.layer_norm_first,
        "apply_spec_augment": True, "mask_time_prob": 0.05, "mask_time_length": cfg.mask_length,
        "mask_time_min_masks": cfg.min_masks, "mask_feature_prob": 0.0,
        "mhubert_model_config": cfg.to_dict(),
    }


def config_from_hf(hf: dict[str, Any]) -> HubertConfig:
    """transformers config.json -> HubertConfig (our own copy wins when present)."""
    if "mhubert_model_config" in hf:
        return HubertConfig.from_dict(hf["mhubert_model_config"])
    if hf.get("model_type", "hubert") != "hubert":
        raise BadInput(f"not a HuBERT config: model_type={hf.get('model_type')!r}")
    if hf.get("do_stable_layer_norm", False) or hf.get("conv_pos_batch_norm", False):
        raise BadInput("only post-LN HuBERT with weight-normed positional conv is supported")
    if not hf.get("feat_proj_layer_norm", True):
        raise BadInput("only feat_proj_layer_norm=true HuBERT configs are supported")
    n = len(hf.get("conv_dim", []))
    convs = tuple(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"], strict=True)) if n else None
    base = HubertConfig()
    return HubertConfig(
        conv_layers=convs or base.conv_layers,
        conv_bias=hf.get("conv_bias", False),
        extractor_mode="default" if hf.get("feat_extract_norm", "group") == "group" else "layer_norm",
        embed_dim=hf.get("hidden_size", 768), num_layers=hf.get("num_hidden_layers", 12),
        num_heads=hf.get("num_attention_heads", 12), ffn_dim=hf.get("intermediate_size", 3072),
        conv_pos=hf.get("num_conv_pos_embeddings", 128),
        conv_pos_groups=hf.get("num_conv_pos_embedding_groups", 16),
        dropout=hf.get("hidden_dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
        activation_dropout=hf.get("activation_dropout", 0.0),
        dropout_input=hf.get("feat_proj_dropout", 0.1), layerdrop=hf.get("layerdrop", 0.05),
    )


def _local_dir(url: str, tmp: str, names: tuple[str, ...]) -> str:
    """A local directory holding ``url``'s files among ``names`` (downloads if remote)."""
    local = storage.local_path(url)
    if local is not None:
        if not os.path.isdir(local):
            raise BadInput(f"not a model directory: {url}")
        return local
    present = storage.listdir(url)
    if not present:
        raise BadInput(f"not found: {url}")
    for name in names:
        if name in present:
            storage.download_file(storage.join(url, name), os.path.join(tmp, name))
    return tmp


def _verify_model_dir(path: str) -> None:
    """A directory committed by :func:`save_hf` (an mhubert ``model`` marker) is checked against
    its marker (sizes and sha256) before use: :class:`CorruptArtifact` names a changed file. Other
    directories (downloaded from a hub, older markers) are read as they are."""
    try:
        m = read_marker(path)
    except BadInput:
        return
    if m is not None and m.kind == Model.kind:
        Model(path).verify([n for n in ("config.json", "model.safetensors") if n in m.files])


def load_hf(path: str) -> HubertModel:
    """A transformers ``HubertModel`` directory (config.json + model.safetensors or
    pytorch_model.bin) -> our encoder in eval mode."""
    _verify_model_dir(path)
    with tempfile.TemporaryDirectory() as tmp:
        d = _local_dir(path, tmp, ("config.json", "model.safetensors", "pytorch_model.bin"))
        cfg_path = os.path.join(d, "config.json")
        if not os.path.exists(cfg_path):
            raise BadInput(f"{path} has no config.json: not a transformers model directory")
        with open(cfg_path) as f:
            cfg = config_from_hf(json.load(f))
        if os.path.exists(os.path.join(d, "model.safetensors")):
            from safetensors.torch import load_file

            sd = load_file(os.path.join(d, "model.safetensors"))
        elif os.path.exists(os.path.join(d, "pytorch_model.bin")):
            sd = torch.load(os.path.join(d, "pytorch_model.bin"), map_location="cpu", weights_only=True)
        else:
            raise BadInput(f"{path} has neither model.safetensors nor pytorch_model.bin")
    model = HubertModel(cfg)
    load_into(model, from_hf_state_dict(sd), path, allow_missing=("mask_emb",))
    return model.eval()


def save_hf(model: HubertModel | HubertPretrainModel, path: str) -> Model:
    """Write config.json + model.safetensors loadable by ``transformers.HubertModel.from_pretrained``
    as a committed :class:`~mhubert.artifacts.Model` (atomic per file, marker with their sha256
    last). A pretraining model contributes its encoder."""
    from safetensors.torch import save as save_safetensors

    enc = model.encoder if isinstance(model, HubertPretrainModel) else model
    sd = {k: v.detach().to("cpu").contiguous() for k, v in to_hf_state_dict(enc).items()}
    art = Model(path)
    art.write_bytes("model.safetensors", save_safetensors(sd, metadata={"format": "pt"}))
    art.write_json("config.json", hf_config_dict(enc.cfg))
    art.commit({"format": "transformers", "model_type": "hubert"},
               settings={"model_config": enc.cfg.to_dict()})
    return art


# -- trainer checkpoints -----------------------------------------------------------------------
def encoder_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HubertPretrainModel or HubertModel state_dict -> HubertModel state_dict."""
    sd = strip_prefixes(sd)
    if any(k.startswith("encoder.feature_extractor.") for k in sd):
        return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    return sd


def _read_pt(path: str) -> dict[str, Any]:
    """A ``.pt`` as a dict: weights-only when it can be, else full unpickling (our trainer stores
    RNG states; fairseq stores its Dictionary, read through stubs)."""
    data = storage.read_bytes(path)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("%s needs full unpickling (weights_only=False); load only trusted files", path)
        ckpt = read_checkpoint(data, path)
    except (RuntimeError, EOFError, ValueError) as e:
        raise BadInput(f"{path} is not a readable checkpoint: {e}") from e
    if not isinstance(ckpt, dict):
        raise BadInput(f"{path} is not a checkpoint (a {type(ckpt).__name__})")
    return ckpt


def _pretrain_from(ckpt: dict[str, Any], path: str) -> HubertPretrainModel:
    if "num_classes" not in ckpt:
        raise BadInput(f"{path} holds an encoder only, no prediction head (use a trainer "
                       "checkpoint, a pretrain.pt or a fairseq checkpoint)")
    model = HubertPretrainModel(HubertConfig.from_dict(ckpt["model_config"]), int(ckpt["num_classes"]))
    load_into(model, strip_prefixes(ckpt["model"]), path)
    return model.eval()


def _check_trainer(ckpt: dict[str, Any], path: str) -> None:
    if "model" not in ckpt or "model_config" not in ckpt:
        raise BadInput(f"{path} is not a trainer checkpoint (needs 'model' and 'model_config') "
                       "nor a fairseq HuBERT checkpoint")


def load_checkpoint_model(path: str) -> HubertModel:
    """A trainer checkpoint ``{"model_config": dict, "model": state_dict, ...}`` or a fairseq HuBERT
    checkpoint -> encoder (eval)."""
    ckpt = _read_pt(path)
    if is_fairseq(ckpt):
        return load_fairseq(path).encoder
    _check_trainer(ckpt, path)
    model = HubertModel(HubertConfig.from_dict(ckpt["model_config"]))
    load_into(model, encoder_state_dict(ckpt["model"]), path)
    return model.eval()


def _run_checkpoint(url: str) -> str | None:
    """The checkpoint a training run directory's ``checkpoints/latest`` names, if ``url`` is one."""
    run = TrainRun(url)
    if not storage.exists(run.latest_pointer_url):
        return None
    text = storage.read_text(run.latest_pointer_url).strip()  # {"name": ..., "sha256": ...}
    name = json.loads(text)["name"] if text.startswith("{") else text
    return storage.join(run.checkpoints_url, name)


def load_pretrain(url: str) -> tuple[HubertPretrainModel, dict[str, Any]]:
    """Encoder + prediction head (eval) and what the file says about its training
    (``label_rate``, ``step``; absent when unknown): from a trainer checkpoint (or a training run
    directory: its latest checkpoint), a ``pretrain.pt`` from ``model import``, or a fairseq
    HuBERT checkpoint."""
    url = _run_checkpoint(url) or url
    if storage.exists(storage.join(url, "config.json")):
        raise BadInput(f"{url} is a transformers directory: it holds the encoder only, no prediction "
                       "head; use a trainer checkpoint, a training run directory, a pretrain.pt or a "
                       "fairseq .pt")
    ckpt = _read_pt(url)
    if is_fairseq(ckpt):
        task = (ckpt.get("cfg") or {}).get("task") or {}
        hist = ckpt.get("optimizer_history") or [{}]
        meta = {"label_rate": task.get("label_rate"), "step": hist[-1].get("num_updates")}
        return load_fairseq(url), {k: v for k, v in meta.items() if v is not None}
    _check_trainer(ckpt, url)
    meta = {k: ckpt[k] for k in ("label_rate", "step") if k in ckpt}
    return _pretrain_from(ckpt, url), meta


def load_pretrain_model(url: str) -> HubertPretrainModel:
    """:func:`load_pretrain` without the training facts."""
    return load_pretrain(url)[0]


def load_model(url: str) -> HubertModel:
    """An encoder for inference (eval mode): a transformers directory, a trainer ``.pt`` or a
    fairseq HuBERT ``.pt``."""
    if url.endswith((".pt", ".pth", ".ckpt")):
        return load_checkpoint_model(url)
    if storage.exists(storage.join(url, "config.json")):
        return load_hf(url)
    fs, p = storage.get_fs(url)
    if fs.isfile(p):
        return load_checkpoint_model(url)
    raise BadInput(f"{url} is neither a transformers model directory (config.json) nor a checkpoint file")


def save_checkpoint_model(model: HubertModel | HubertPretrainModel, url: str, **extra: Any) -> None:
    """Atomically write ``{"model_config", "model", "num_classes"?, **extra}`` (a file
    :func:`load_model` and ``train --init-from`` read)."""
    ckpt: dict[str, Any] = {"model_config": model.cfg.to_dict(),
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if isinstance(model, HubertPretrainModel):
        ckpt["num_classes"] = model.num_classes
    ckpt.update(extra)
    with storage.atomic_open(url) as f:
        torch.save(ckpt, f)
