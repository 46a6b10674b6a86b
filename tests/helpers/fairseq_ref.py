"""torchaudio's HuBERT built from a fairseq checkpoint's ``cfg.model``: the reference the fairseq
layout is pinned against (torchaudio converts fairseq's keys itself)."""

from __future__ import annotations

import torch
import torchaudio
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict


def torchaudio_model(cfg: dict) -> torch.nn.Module:
    """torchaudio's Wav2Vec2Model (its HuBERT encoder) configured from the fairseq ``cfg.model``."""
    return torchaudio.models.wav2vec2_model(
        extractor_mode="group_norm" if cfg["extractor_mode"] == "default" else "layer_norm",
        extractor_conv_layer_config=eval(cfg["conv_feature_layers"]),  # fairseq evaluates it too
        extractor_conv_bias=cfg["conv_bias"], encoder_embed_dim=cfg["encoder_embed_dim"],
        encoder_projection_dropout=cfg["dropout_input"], encoder_pos_conv_kernel=cfg["conv_pos"],
        encoder_pos_conv_groups=cfg["conv_pos_groups"], encoder_num_layers=cfg["encoder_layers"],
        encoder_num_heads=cfg["encoder_attention_heads"],
        encoder_attention_dropout=cfg["attention_dropout"],
        encoder_ff_interm_features=cfg["encoder_ffn_embed_dim"],
        encoder_ff_interm_dropout=cfg["activation_dropout"], encoder_dropout=cfg["dropout"],
        encoder_layer_norm_first=cfg["layer_norm_first"], encoder_layer_drop=cfg["encoder_layerdrop"],
        aux_num_out=None)


def load_torchaudio(ckpt: dict) -> torch.nn.Module:
    """A fairseq checkpoint dict -> torchaudio's model with its weights (strict), eval mode."""
    sd = _convert_state_dict(ckpt["model"])
    sd.pop("label_embs_concat", None)
    model = torchaudio_model(ckpt["cfg"]["model"])
    model.load_state_dict(sd, strict=True)
    return model.eval()
