"""Checkpoint conversion: transformers directories, fairseq HuBERT checkpoints, trainer checkpoints.

All three are renamings of the same tensors (:data:`HF_RENAMES`, :data:`FAIRSEQ_RENAMES`); every
path is an fsspec URL (remote files are downloaded to a temporary directory first).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickle
import re
import tempfile
import types
from typing import Any

import torch

from mhubert import storage
from mhubert.artifacts import Model
from mhubert.errors import BadInput
from mhubert.model.config import HubertConfig
from mhubert.model.hubert import HubertModel, HubertPretrainModel

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

# (fairseq regex, our replacement) for a fairseq hubert.HubertModel state_dict.
FAIRSEQ_RENAMES: list[tuple[str, str]] = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"encoder.feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?",
     r"encoder.feature_extractor.conv_layers.\1.layer_norm."),
    (r"^layer_norm\.", "encoder.feature_norm."),
    (r"^post_extract_proj\.", "encoder.feature_proj."),
    (r"^mask_emb$", "encoder.mask_emb"),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.", "encoder.pos_conv.conv."),  # bias; newer parametrizations.*
    (r"^encoder\.layer_norm\.", "encoder.encoder_norm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output_dense."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^final_proj\.", "final_proj."),
    (r"^label_embs_concat$", "label_embs"),
]
FAIRSEQ_SPECIALS = 4  # <s> <pad> </s> <unk> come before the K cluster ids in fairseq's Dictionary
_OLD_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
                    "weight_v": "parametrizations.weight.original1"}


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes."""
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


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


def load_hf(path: str) -> HubertModel:
    """A transformers ``HubertModel`` directory (config.json + model.safetensors or
    pytorch_model.bin) -> our encoder in eval mode."""
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
    _load_into(model, from_hf_state_dict(sd), path, allow_missing=("mask_emb",))
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


def _load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: str,
               allow_missing: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd) - set(allow_missing))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise BadInput(f"{where}: checkpoint does not match the model config; missing "
                       f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                       f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise BadInput(f"{where}: {k} has shape {tuple(v.shape)}, the config expects "
                           f"{tuple(own[k].shape)}")
    model.load_state_dict(sd, strict=False)


# -- fairseq -----------------------------------------------------------------------------------
class _Stub:
    """Stand-in for classes of packages that are not installed (fairseq's Dictionary, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Stub,), {"__module__": module})


_stub_pickle = types.SimpleNamespace(Unpickler=_StubUnpickler, __name__="mhubert_stub_pickle",
                                     load=lambda f, **kw: _StubUnpickler(f, **kw).load())


def _parse_conv_layers(spec: Any) -> tuple[tuple[int, int, int], ...]:
    """fairseq's ``conv_feature_layers`` string, e.g. ``[(512,10,5)] + [(512,3,2)] * 4``, evaluated
    without ``eval`` (lists, tuples, ints, + and * only)."""
    if not isinstance(spec, str):
        return tuple(tuple(c) for c in spec)

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise BadInput(f"unsupported conv_feature_layers expression: {spec!r}")

    try:
        return tuple(tuple(c) for c in ev(ast.parse(spec, mode="eval")))
    except SyntaxError as e:
        raise BadInput(f"bad conv_feature_layers {spec!r}: {e}") from e


def config_from_fairseq(m: dict[str, Any]) -> HubertConfig:
    """fairseq ``cfg["model"]`` (a dict) -> HubertConfig."""
    if m.get("activation_fn", "gelu") != "gelu":
        raise BadInput(f"only GELU models are supported, got activation_fn={m.get('activation_fn')!r}")
    if m.get("conv_pos_batch_norm", False):
        raise BadInput("conv_pos_batch_norm=true is not supported")
    base = HubertConfig()
    g = m.get
    return HubertConfig(
        conv_layers=_parse_conv_layers(g("conv_feature_layers", base.conv_layers)),
        conv_bias=bool(g("conv_bias", False)), extractor_mode=g("extractor_mode", "default"),
        embed_dim=g("encoder_embed_dim", 768), num_layers=g("encoder_layers", 12),
        num_heads=g("encoder_attention_heads", 12), ffn_dim=g("encoder_ffn_embed_dim", 3072),
        layer_norm_first=bool(g("layer_norm_first", False)), conv_pos=g("conv_pos", 128),
        conv_pos_groups=g("conv_pos_groups", 16), dropout=g("dropout", 0.1),
        attention_dropout=g("attention_dropout", 0.1), activation_dropout=g("activation_dropout", 0.0),
        dropout_input=g("dropout_input", 0.0), dropout_features=g("dropout_features", 0.0),
        layerdrop=g("encoder_layerdrop", 0.0), feature_grad_mult=g("feature_grad_mult", 1.0),
        mask_prob=g("mask_prob", 0.65), mask_length=g("mask_length", 10),
        final_dim=g("final_dim", 0) or g("encoder_embed_dim", 768), logit_temp=g("logit_temp", 0.1),
    )


def fairseq_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq hubert state_dict -> ours (``HubertPretrainModel`` names; specials dropped)."""
    out = {}
    for k, v in sd.items():
        new = None
        for pat, rep in FAIRSEQ_RENAMES:
            if re.search(pat, k):
                new = re.sub(pat, rep, k)
                break
        if new is None:
            raise BadInput(f"unexpected fairseq parameter {k!r}")
        out[new] = v
    if "label_embs" in out:
        out["label_embs"] = out["label_embs"][FAIRSEQ_SPECIALS:]
    return out


def load_fairseq(path: str) -> HubertPretrainModel:
    """A fairseq HuBERT checkpoint (``{"cfg": {"model": ...}, "model": state_dict}``) -> our
    pretraining model (eval mode); ``label_embs`` keeps the K cluster rows, not the 4 specials."""
    ckpt = torch.load(io.BytesIO(storage.read_bytes(path)), map_location="cpu", weights_only=False,
                      pickle_module=_stub_pickle)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise BadInput(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    model_cfg = (ckpt.get("cfg") or {}).get("model") if isinstance(ckpt.get("cfg"), dict) else None
    if model_cfg is None and ckpt.get("args") is not None:
        model_cfg = vars(ckpt["args"]) if not isinstance(ckpt["args"], dict) else ckpt["args"]
    if not isinstance(model_cfg, dict):
        raise BadInput(f"{path} has no cfg['model'] (or args) dict")
    cfg = config_from_fairseq(model_cfg)
    sd = fairseq_state_dict(ckpt["model"])
    if "label_embs" not in sd or "final_proj.weight" not in sd:
        raise BadInput(f"{path}: no label_embs_concat/final_proj (a fine-tuned model?)")
    if sd["final_proj.weight"].shape[0] != cfg.final_dim:
        raise BadInput(f"{path}: final_proj has {sd['final_proj.weight'].shape[0]} outputs; only one "
                       f"label set (final_dim {cfg.final_dim}) is supported")
    model = HubertPretrainModel(cfg, sd["label_embs"].shape[0])
    _load_into(model, sd, path)
    return model.eval()


# -- trainer checkpoints -----------------------------------------------------------------------
def encoder_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HubertPretrainModel or HubertModel state_dict -> HubertModel state_dict."""
    sd = _strip_prefixes(sd)
    if any(k.startswith("encoder.feature_extractor.") for k in sd):
        return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    return sd


def load_checkpoint_model(path: str) -> HubertModel:
    """A trainer checkpoint ``{"model_config": dict, "model": state_dict, ...}`` -> encoder (eval)."""
    data = storage.read_bytes(path)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # our own trainer may store extra Python objects (e.g. RNG states) next to the weights
        log.warning("%s needs full unpickling (weights_only=False); load only trusted files", path)
        try:
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as e:
            raise BadInput(f"{path} is not a readable checkpoint: {e}") from e
    except (RuntimeError, EOFError) as e:
        raise BadInput(f"{path} is not a readable checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise BadInput(f"{path} is not a trainer checkpoint (needs 'model' and 'model_config')")
    model = HubertModel(HubertConfig.from_dict(ckpt["model_config"]))
    _load_into(model, encoder_state_dict(ckpt["model"]), path)
    return model.eval()


def load_model(url: str) -> HubertModel:
    """An encoder for inference (eval mode): a transformers directory or a trainer ``.pt``."""
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
