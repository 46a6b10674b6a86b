"""fairseq HuBERT checkpoints, both ways: read one (mHuBERT-147's released ``.pt``, any fairseq
``hubert`` pretraining checkpoint) into our model, and write ours in the same layout.

A fairseq checkpoint is ``{"args": None, "cfg": {"model", "task", "criterion", ...}, "model":
state_dict, ...}`` with fairseq's parameter names (:data:`FAIRSEQ_RENAMES`) and ``label_embs_concat``
holding one row per entry of fairseq's ``Dictionary``: 4 specials, then the K clusters. fairseq does
not run on this Python, so reading unpickles its classes as stubs.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import types
from typing import Any

import torch

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.model.config import HubertConfig
from mhubert.model.hubert import HubertPretrainModel
from mhubert.model.state import load_into

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


def config_from_fairseq(m: dict[str, Any], criterion: dict[str, Any] | None = None) -> HubertConfig:
    """fairseq ``cfg["model"]`` (and ``cfg["criterion"]``: the loss weights), dicts -> HubertConfig."""
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
        **_loss_weights(criterion or {}, base),
    )


def _loss_weights(c: dict[str, Any], base: HubertConfig) -> dict[str, float]:
    """fairseq ``hubert`` criterion -> our head's loss weights (``loss_weights[0]``: the feature
    penalty, fairseq's only extra loss for HuBERT)."""
    weights = c.get("loss_weights") or [base.feature_pen_weight]
    return {"pred_masked_weight": float(c.get("pred_masked_weight", base.pred_masked_weight)),
            "pred_nomask_weight": float(c.get("pred_nomask_weight", base.pred_nomask_weight)),
            "feature_pen_weight": float(weights[0])}


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
    ckpt = read_checkpoint(storage.read_bytes(path), path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise BadInput(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    model_cfg = (ckpt.get("cfg") or {}).get("model") if isinstance(ckpt.get("cfg"), dict) else None
    if model_cfg is None and ckpt.get("args") is not None:
        model_cfg = vars(ckpt["args"]) if not isinstance(ckpt["args"], dict) else ckpt["args"]
    if not isinstance(model_cfg, dict):
        raise BadInput(f"{path} has no cfg['model'] (or args) dict")
    criterion = (ckpt.get("cfg") or {}).get("criterion") if isinstance(ckpt.get("cfg"), dict) else None
    cfg = config_from_fairseq(model_cfg, criterion if isinstance(criterion, dict) else None)
    sd = fairseq_state_dict(ckpt["model"])
    if "label_embs" not in sd or "final_proj.weight" not in sd:
        raise BadInput(f"{path}: no label_embs_concat/final_proj (a fine-tuned model?)")
    if sd["final_proj.weight"].shape[0] != cfg.final_dim:
        raise BadInput(f"{path}: final_proj has {sd['final_proj.weight'].shape[0]} outputs; only one "
                       f"label set (final_dim {cfg.final_dim}) is supported")
    model = HubertPretrainModel(cfg, sd["label_embs"].shape[0])
    load_into(model, sd, path)
    return model.eval()


def read_checkpoint(data: bytes, where: str) -> Any:
    """Unpickle a ``.pt`` whose classes may be fairseq's (stubs stand in for missing packages)."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False,
                          pickle_module=_stub_pickle)
    except Exception as e:  # truncated zip, bad pickle: torch raises several types
        raise BadInput(f"{where} is not a readable checkpoint: {e}") from e


def is_fairseq(ckpt: Any) -> bool:
    """A fairseq checkpoint: a ``model`` state dict with fairseq's names and ``cfg`` or ``args``."""
    return (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict)
            and ("cfg" in ckpt or "args" in ckpt) and "model_config" not in ckpt
            and any(k.startswith("post_extract_proj.") for k in ckpt["model"]))


# -- writing -----------------------------------------------------------------------------------
# (our regex, fairseq replacement): the inverse of FAIRSEQ_RENAMES, fairseq 0.12's weight-norm names
TO_FAIRSEQ: list[tuple[str, str]] = [
    (r"^encoder\.feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^encoder\.feature_norm\.", "layer_norm."),
    (r"^encoder\.feature_proj\.", "post_extract_proj."),
    (r"^encoder\.mask_emb$", "mask_emb"),
    (r"^encoder\.pos_conv\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv\.conv\.bias$", "encoder.pos_conv.0.bias"),
    (r"^encoder\.encoder_norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^final_proj\.", "final_proj."),
    (r"^label_embs$", "label_embs_concat"),
]


def to_fairseq_state_dict(model: HubertPretrainModel) -> dict[str, torch.Tensor]:
    """Our pretraining model under fairseq ``HubertModel``'s names; ``label_embs_concat`` gets the
    4 rows of fairseq's special symbols (zeros: they are never targets) before the K clusters."""
    norm = "layer_norm" if model.cfg.extractor_mode == "layer_norm" else "group_norm"
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().clone()
        m = re.match(r"^encoder\.feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)$", k)
        if m:  # GroupNorm sits at index 2 of the conv block; LayerNorm inside TransposeLast at 2.1
            out[f"feature_extractor.conv_layers.{m[1]}.2.{'1.' if norm == 'layer_norm' else ''}"
                f"{m[2]}"] = v
            continue
        for pat, rep in TO_FAIRSEQ:
            if re.search(pat, k):
                out[re.sub(pat, rep, k)] = v
                break
        else:
            raise AssertionError(f"no fairseq name for {k}")
    embs = out["label_embs_concat"]
    out["label_embs_concat"] = torch.cat([embs.new_zeros(FAIRSEQ_SPECIALS, embs.shape[1]), embs])
    return out


def conv_layers_spec(conv_layers: tuple[tuple[int, int, int], ...]) -> str:
    """fairseq's ``conv_feature_layers`` string, run-length encoded as fairseq writes it."""
    parts, i = [], 0
    while i < len(conv_layers):
        j = i
        while j < len(conv_layers) and conv_layers[j] == conv_layers[i]:
            j += 1
        c = conv_layers[i]
        parts.append(f"[({c[0]}, {c[1]}, {c[2]})]" + (f" * {j - i}" if j - i > 1 else ""))
        i = j
    return " + ".join(parts)


def fairseq_cfg(cfg: HubertConfig, *, label_rate: int, normalize: bool = True,
                max_sample_size: int = 250_000, min_sample_size: int = 32_000,
                optimization: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg`` of a fairseq ``hubert_pretraining`` checkpoint (``model``/``task``/``criterion``
    sections with fairseq's field names and mHuBERT-147's values where we have no field)."""
    model = {
        "_name": "hubert", "label_rate": float(label_rate),
        "extractor_mode": cfg.extractor_mode, "encoder_layers": cfg.num_layers,
        "encoder_embed_dim": cfg.embed_dim, "encoder_ffn_embed_dim": cfg.ffn_dim,
        "encoder_attention_heads": cfg.num_heads, "activation_fn": "gelu", "layer_type": "transformer",
        "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout, "encoder_layerdrop": cfg.layerdrop,
        "dropout_input": cfg.dropout_input, "dropout_features": cfg.dropout_features,
        "final_dim": cfg.final_dim, "untie_final_proj": True, "layer_norm_first": cfg.layer_norm_first,
        "conv_feature_layers": conv_layers_spec(cfg.conv_layers), "conv_bias": cfg.conv_bias,
        "logit_temp": cfg.logit_temp, "target_glu": False, "feature_grad_mult": cfg.feature_grad_mult,
        "mask_length": cfg.mask_length, "mask_prob": cfg.mask_prob, "mask_selection": "static",
        "mask_other": 0.0, "no_mask_overlap": False, "mask_min_space": 1,
        "mask_channel_length": 10, "mask_channel_prob": 0.0, "mask_channel_selection": "static",
        "mask_channel_other": 0.0, "no_mask_channel_overlap": False, "mask_channel_min_space": 1,
        "conv_pos": cfg.conv_pos, "conv_pos_groups": cfg.conv_pos_groups,
        "latent_temp": [2.0, 0.5, 0.999995], "skip_masked": False, "skip_nomask": False,
        "checkpoint_activations": False, "required_seq_len_multiple": 2,
    }
    task = {
        "_name": "hubert_pretraining", "data": "", "fine_tuning": False, "labels": ["km"],
        "label_dir": None, "label_rate": float(label_rate), "sample_rate": SAMPLE_RATE,
        "normalize": normalize, "enable_padding": False, "max_keep_size": None,
        "max_sample_size": max_sample_size, "min_sample_size": min_sample_size,
        "single_target": False, "random_crop": True, "pad_audio": False,
    }
    criterion = {"_name": "hubert", "pred_masked_weight": cfg.pred_masked_weight,
                 "pred_nomask_weight": cfg.pred_nomask_weight,
                 "loss_weights": [cfg.feature_pen_weight], "log_keys": []}
    return {"_name": None, "common": {"fp16": False, "seed": 1337}, "model": model, "task": task,
            "criterion": criterion, "optimization": dict(optimization or {}),
            "checkpoint": {}, "distributed_training": {}, "dataset": {}}


def fairseq_checkpoint(model: HubertPretrainModel, *, label_rate: int, num_updates: int = 0,
                       **cfg_kw: Any) -> dict[str, Any]:
    """The whole checkpoint dict, in the layout of mHuBERT-147's released ``.pt`` (without the
    optimizer state, which only fairseq's own trainer could use)."""
    return {"args": None, "cfg": fairseq_cfg(model.cfg, label_rate=label_rate, **cfg_kw),
            "model": to_fairseq_state_dict(model), "criterion": None,
            "optimizer_history": [{"criterion_name": "HubertCriterion",
                                   "optimizer_name": "AdamOptimizer",
                                   "lr_scheduler_state": {}, "num_updates": num_updates}],
            "task_state": {}, "extra_state": {"epoch": 1}, "last_optimizer_state": None}


def save_fairseq(model: HubertPretrainModel, url: str, *, label_rate: int, num_updates: int = 0,
                 **cfg_kw: Any) -> None:
    """Atomically write :func:`fairseq_checkpoint` to ``url``."""
    with storage.atomic_open(url) as f:
        torch.save(fairseq_checkpoint(model, label_rate=label_rate, num_updates=num_updates,
                                      **cfg_kw), f)
