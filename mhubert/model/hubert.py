"""HuBERT (base) in one file: conv feature extractor, transformer encoder, pretraining head.

Shapes: B batch, S samples (16 kHz), T frames (50 Hz), C conv channels, D embed_dim, K classes.

    wav (B, S) -> conv extractor (B, C, T) -> LayerNorm(C) -> Linear(C->D) -> [mask_emb at masked t]
      -> x + GELU(pos_conv(x)) -> LayerNorm -> N x post-LN layer -> (B, T, D)
    pretraining: final_proj (D->F) · label_embs (K, F): cosine / logit_temp -> logits for the loss
    (``mhubert.model.loss``: CE on masked frames + feature penalty)

The parameter layout is transformers' ``HubertModel`` with shorter names (see
``mhubert.model.convert.HF_RENAMES``), so conversion is a renaming. Unlike transformers, padding is
honoured everywhere: the first conv's GroupNorm takes its statistics over valid frames only,
padded frames are zeroed before the positional conv, and attention masks padded keys; outputs at
valid positions therefore do not depend on what else is in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from mhubert.errors import BadInput
from mhubert.model.config import HubertConfig
from mhubert.model.loss import PretrainOutput, cosine_logits, pretrain_loss
from mhubert.model.masking import compute_span_mask

LN_EPS = 1e-5


def conv_out_length(n: torch.Tensor | int, kernel: int, stride: int) -> torch.Tensor | int:
    """Frames out of a conv without padding: floor((n - kernel) / stride) + 1, at least 0."""
    if isinstance(n, int):
        return max(0, (n - kernel) // stride + 1)
    return torch.div(n - kernel, stride, rounding_mode="floor").add(1).clamp(min=0)


def padding_mask(lengths: torch.Tensor, tmax: int) -> torch.Tensor:
    """bool (B, T): True at valid positions t < lengths[b]."""
    return torch.arange(tmax, device=lengths.device)[None, :] < lengths[:, None]


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm with one group per channel whose statistics skip padded frames.

    Equal to ``nn.GroupNorm(C, C)`` when every frame is valid. x: (B, C, T), valid: (B, T) bool.
    """

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None or bool(valid.all()):
            return super().forward(x)
        # statistics in fp32 like fairseq's Fp32GroupNorm (and autocast's group_norm)
        xf, w = x.float(), valid[:, None, :].float()
        n = w.sum(-1, keepdim=True).clamp(min=1)
        mean = (xf * w).sum(-1, keepdim=True) / n
        var = ((xf - mean).pow(2) * w).sum(-1, keepdim=True) / n
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]).to(x.dtype)


class ConvBlock(nn.Module):
    """Conv1d (no padding) -> [norm] -> GELU. (B, C_in, T_in) -> (B, C_out, T_out)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.layer_norm = MaskedGroupNorm(c_out, c_out, eps=LN_EPS)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out, eps=LN_EPS)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.conv(x)
        if lengths is not None:
            lengths = conv_out_length(lengths, self.kernel, self.stride)
        if self.norm_kind == "group":
            x = self.layer_norm(x, None if lengths is None else padding_mask(lengths, x.shape[-1]))
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x), lengths


class FeatureExtractor(nn.Module):
    """wav (B, S) -> features (B, C, T), frame lengths (B,) or None."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        blocks, c_in = [], 1
        for i, (c, k, s) in enumerate(cfg.conv_layers):
            norm = "layer" if cfg.extractor_mode == "layer_norm" else ("group" if i == 0 else None)
            blocks.append(ConvBlock(c_in, c, k, s, cfg.conv_bias, norm))
            c_in = c
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = wav[:, None, :]
        for block in self.conv_layers:
            x, lengths = block(x, lengths)
        return x, lengths


class PositionalConv(nn.Module):
    """Convolutional relative position embedding: (B, T, D) -> (B, T, D), GELU(conv(x)).

    Kernel K, groups G, weight norm over dim 2; an even kernel yields T + 1 frames and the last is
    dropped (fairseq's SamePad).
    """

    def __init__(self, dim: int, kernel: int, groups: int, dropout: float = 0.0):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        std = math.sqrt(4 * (1.0 - dropout) / (kernel * dim))
        nn.init.normal_(conv.weight, mean=0.0, std=std)
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.remove:
            y = y[:, :, : -self.remove]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention through SDPA. x (B, T, D), key_valid (B, T) bool or None."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = None if key_valid is None else key_valid[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """Linear(D->F) -> GELU -> dropout -> Linear(F->D). (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, hidden: int, activation_dropout: float):
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation_dropout(F.gelu(self.intermediate_dense(x))))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: x = LN(x + attn(x)); x = LN(x + ffn(x)). (B, T, D) -> (B, T, D)."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.attention = SelfAttention(cfg.embed_dim, cfg.num_heads, cfg.attention_dropout)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.feed_forward = FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        x = self.layer_norm(x + self.dropout(self.attention(x, key_valid)))
        return self.final_layer_norm(x + self.dropout(self.feed_forward(x)))


class HubertModel(nn.Module):
    """The HuBERT encoder (94,371,712 parameters at base size, as transformers' ``HubertModel``).

    ``mask_emb`` (D,) replaces masked frames during pretraining (transformers: ``masked_spec_embed``).
    """

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.feature_extractor = FeatureExtractor(cfg)
        self.feature_norm = nn.LayerNorm(cfg.conv_dim, eps=LN_EPS)
        self.feature_proj = nn.Linear(cfg.conv_dim, d)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(d).uniform_())
        self.pos_conv = PositionalConv(d, cfg.conv_pos, cfg.conv_pos_groups, cfg.dropout)
        self.encoder_norm = nn.LayerNorm(d, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        # fairseq init_bert_params for linears, Kaiming for the conv extractor
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for block in self.feature_extractor.conv_layers:
            nn.init.kaiming_normal_(block.conv.weight)

    # -- lengths -------------------------------------------------------------------------------
    def num_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` samples (49 for 16,000 at base)."""
        for _, k, s in self.cfg.conv_layers:
            n_samples = conv_out_length(n_samples, k, s)
        return n_samples

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample lengths -> (B,) frame lengths (long)."""
        lengths = lengths.long()
        for _, k, s in self.cfg.conv_layers:
            lengths = conv_out_length(lengths, k, s)
        return lengths

    # -- forward pieces ------------------------------------------------------------------------
    def _check(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        if wav.dim() != 2:
            raise BadInput(f"wav must be (batch, samples), got shape {tuple(wav.shape)}")
        rf = self.cfg.receptive_field
        if lengths is None:
            if wav.shape[1] < rf:
                raise BadInput(f"audio too short: {wav.shape[1]} samples, need at least {rf}")
            return None
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        if lengths.shape != (wav.shape[0],):
            raise BadInput(f"lengths must have shape ({wav.shape[0]},), got {tuple(lengths.shape)}")
        if lengths.min() < rf or lengths.max() > wav.shape[1]:
            raise BadInput(f"lengths must be in [{rf}, {wav.shape[1]}] samples, got "
                           f"{lengths.min().item()}..{lengths.max().item()}")
        return None if bool((lengths == wav.shape[1]).all()) else lengths

    def extract_features(self, wav: torch.Tensor, lengths: torch.Tensor | None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conv extractor: (B, S) -> (B, C, T) and frame lengths (None when unpadded).

        A padded batch in CPU inference (no grad, not traced for export) runs the extractor one
        utterance at a time on its own samples, as fairseq's feature dump does: on 2 cores a padded
        batch of 8 base-size utterances cost 1.35x eight single ones (the masked group norm's
        full-size temporaries, and convolutions up to the longest utterance). Frames past an
        utterance's length are zeros here; they never reach a valid frame (convolutions read only
        valid frames, and ``encode`` zeroes padding before the positional conv).
        """
        if (lengths is None or wav.device.type != "cpu" or torch.is_grad_enabled()
                or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            return self.feature_extractor(wav, lengths)
        flen = self.frame_lengths(lengths)
        t = int(self.frame_lengths(torch.tensor([wav.shape[1]]))[0])
        out = None
        for b in range(wav.shape[0]):
            f, _ = self.feature_extractor(wav[b:b + 1, : int(lengths[b])], None)   # (1, C, T_b)
            if out is None:
                out = f.new_zeros(wav.shape[0], f.shape[1], t)
            out[b, :, : f.shape[2]] = f[0]
        return out, flen

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, C, T) conv features -> (B, T, D): LayerNorm(C), Linear(C->D), dropout_input."""
        return self.dropout_input(self.feature_proj(self.feature_norm(feats.transpose(1, 2))))

    def encode(self, x: torch.Tensor, frame_lengths: torch.Tensor | None, num_layers: int | None = None,
               keep_all: bool = False) -> list[torch.Tensor]:
        """Transformer on projected features x (B, T, D); runs the first ``num_layers`` layers.

        Returns [input of layer 1, output of layer 1, ...] when ``keep_all``, else [last].
        """
        valid = None if frame_lengths is None else padding_mask(frame_lengths, x.shape[1])
        if valid is not None:
            x = x.masked_fill(~valid[:, :, None], 0.0)
        x = self.dropout(self.encoder_norm(x + self.pos_conv(x)))
        out = [x]
        n = len(self.layers) if num_layers is None else num_layers
        for layer in self.layers[:n]:
            if self.training and self.cfg.layerdrop > 0 and torch.rand(()) < self.cfg.layerdrop:
                out.append(x)
                continue
            x = layer(x, valid)
            out.append(x)
        return out if keep_all else [x]

    # -- public API ----------------------------------------------------------------------------
    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      num_layers: int | None = None) -> list[torch.Tensor]:
        """The one public way to hidden states: ``num_layers + 1`` tensors (B, T, D), [0] after
        pos_conv + LayerNorm, [i] the output of layer i (transformers' ``output_hidden_states``).

        ``num_layers`` (0..L, default L) stops after that layer: layers above it are never run.
        """
        n = len(self.layers) if num_layers is None else int(num_layers)
        if not 0 <= n <= len(self.layers):
            raise BadInput(f"layer must be in [0, {len(self.layers)}], got {n}")
        lengths = self._check(wav, lengths)
        feats, flen = self.extract_features(wav, lengths)
        return self.encode(self.project(feats), flen, num_layers=n, keep_all=True)

    def extract_layer(self, wav: torch.Tensor, lengths: torch.Tensor | None, layer: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden_states()[layer] (B, T, D) and frame lengths (B,); runs no layer above ``layer``."""
        x = self.hidden_states(wav, lengths, num_layers=layer)[-1]
        flen = (self.frame_lengths(lengths) if lengths is not None
                else torch.full((wav.shape[0],), x.shape[1], dtype=torch.long, device=wav.device))
        return x, flen.to(wav.device)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Last layer (B, T, D)."""
        return self.extract_layer(wav, lengths, len(self.layers))[0]


class HubertPretrainModel(nn.Module):
    """Encoder + masked prediction head (fairseq ``HubertModel`` with one label set).

    ``final_proj``: Linear(D->final_dim); ``label_embs``: (num_classes, final_dim).
    """

    def __init__(self, cfg: HubertConfig, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise BadInput(f"num_classes must be >= 1, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.encoder = HubertModel(cfg)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.final_dim)
        self.label_embs = nn.Parameter(torch.empty(num_classes, cfg.final_dim).uniform_())

    @property
    def mask_emb(self) -> nn.Parameter:
        return self.encoder.mask_emb

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None, labels: torch.Tensor,
                label_rate: int, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> PretrainOutput:
        """wav (B, S), lengths (B,) samples or None, labels (B, L) long at ``label_rate`` Hz (<0 ignored).

        Model frame t predicts ``labels[:, t * label_rate // frame_rate]`` (fairseq feat2tar; every
        second label at 100 Hz); frames beyond the labels are dropped before the transformer.
        ``mask`` (B, T) overrides the random span mask. Returns what the loss needs
        (:class:`~mhubert.model.loss.PretrainOutput`); :meth:`loss` / ``loss.pretrain_loss`` turn
        it into the loss and accuracies.
        """
        enc, cfg = self.encoder, self.cfg
        if labels.dim() != 2 or labels.shape[0] != wav.shape[0]:
            raise BadInput(f"labels must be (batch, L) with batch {wav.shape[0]}, got {tuple(labels.shape)}")
        frame_rate = cfg.frame_rate
        if label_rate <= 0 or label_rate % frame_rate:
            raise BadInput(f"label_rate must be a positive multiple of {frame_rate} Hz, got {label_rate}")
        ratio = label_rate // frame_rate
        if labels.device.type == "cpu" and labels.numel() and int(labels.max()) >= self.num_classes:
            # checked where it costs no device sync; on GPU an out-of-range label is a device assert
            raise BadInput(f"label {int(labels.max())} >= num_classes {self.num_classes}")
        lengths = enc._check(wav, lengths)

        if cfg.feature_grad_mult > 0:
            feats, flen = enc.extract_features(wav, lengths)
            if cfg.feature_grad_mult != 1.0:  # identity forward, gradient scaled by the mult
                m = cfg.feature_grad_mult
                feats = feats * m + feats.detach() * (1.0 - m)
        else:
            with torch.no_grad():
                feats, flen = enc.extract_features(wav, lengths)
        features_pen = feats.float().pow(2).mean()

        t = min(feats.shape[2], labels.shape[1] // ratio)
        if t < 1:
            raise BadInput(f"labels too short: {labels.shape[1]} labels at {label_rate} Hz")
        feats = feats[:, :, :t]
        if flen is None:
            flen = torch.full((wav.shape[0],), t, dtype=torch.long, device=wav.device)
        flen = flen.clamp(max=t)
        targets = labels[:, torch.arange(t, device=labels.device) * ratio].to(wav.device)

        x = enc.project(feats)
        valid = padding_mask(flen, t)
        if mask is None:
            mask = compute_span_mask((x.shape[0], t), flen, cfg.mask_prob, cfg.mask_length,
                                     cfg.min_masks, generator=generator) if self.training else \
                torch.zeros_like(valid)
        mask = mask[:, :t] & valid
        x = torch.where(mask[:, :, None], enc.mask_emb.to(x.dtype), x)
        x = enc.encode(x, flen)[0]

        scored = valid & (targets >= 0)
        logits = cosine_logits(self.final_proj(x), self.label_embs, cfg.logit_temp)
        return PretrainOutput(logits=logits, targets=targets, masked=scored & mask,
                              unmasked=scored & ~mask, features_pen=features_pen)

    def loss(self, out: PretrainOutput) -> dict[str, torch.Tensor]:
        """``pretrain_loss(out, self.cfg)``: loss, CE sum, accuracies' counts."""
        return pretrain_loss(out, self.cfg)


def hubert_base() -> HubertModel:
    """mHuBERT-147 / HuBERT-base encoder, random weights."""
    return HubertModel(HubertConfig.preset("base"))


def hubert_tiny() -> HubertModel:
    """The tiny preset's encoder (tests, demo)."""
    return HubertModel(HubertConfig.preset("tiny"))
