"""``HubertConfig``: the ``model:`` section of the presets (defaults = mHuBERT-147 / HuBERT-base).

Field names follow fairseq's ``HubertConfig`` where one exists, so that a fairseq ``cfg.model`` maps
onto it by name (:func:`mhubert.model.convert.load_fairseq`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass(frozen=True)
class HubertConfig:
    """HuBERT encoder + pretraining head.

    conv_layers: (channels, kernel, stride) per conv of the waveform feature extractor (stride 320
    in total = 50 Hz frames at 16 kHz). extractor_mode: ``default`` (GroupNorm on the first conv
    only) or ``layer_norm`` (LayerNorm after every conv). embed_dim/num_layers/num_heads/ffn_dim: the
    transformer. layer_norm_first: pre-LN (not supported; mHuBERT-147 is post-LN). conv_pos,
    conv_pos_groups: convolutional positional embedding kernel and groups. Dropouts as in fairseq:
    ``dropout`` after attention/FFN and after the positional embedding, ``dropout_input`` after the
    feature projection. layerdrop: probability of skipping a layer in training.
    feature_grad_mult: gradient scale into the conv extractor (0 freezes it). Masking: mask_prob,
    mask_length, min_masks. Head: final_dim, logit_temp (cosine logits / temp), feature_pen_weight.
    Loss weights as fairseq's hubert criterion: pred_masked_weight on masked frames and
    pred_nomask_weight on unmasked ones (0 in the paper), both summed and divided by the masked count.
    """

    conv_layers: tuple[tuple[int, int, int], ...] = field(default=BASE_CONV)
    conv_bias: bool = False
    extractor_mode: str = "default"
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    layer_norm_first: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.1
    dropout_features: float = 0.1
    layerdrop: float = 0.05
    feature_grad_mult: float = 0.1
    mask_prob: float = 0.8
    mask_length: int = 10
    min_masks: int = 2
    final_dim: int = 256
    logit_temp: float = 0.1
    feature_pen_weight: float = 10.0
    pred_masked_weight: float = 1.0
    pred_nomask_weight: float = 0.0

    def __post_init__(self) -> None:
        convs = tuple(tuple(int(v) for v in c) for c in self.conv_layers)
        if not convs or any(len(c) != 3 or min(c) < 1 for c in convs):
            raise BadInput(f"model.conv_layers must be a list of [channels, kernel, stride], got "
                           f"{self.conv_layers!r}")
        object.__setattr__(self, "conv_layers", convs)
        if self.extractor_mode not in ("default", "layer_norm"):
            raise BadInput(f"model.extractor_mode must be 'default' or 'layer_norm', got "
                           f"{self.extractor_mode!r}")
        if self.layer_norm_first:
            raise BadInput("model.layer_norm_first=true (pre-LN) is not supported; mHuBERT-147 is post-LN")
        if self.embed_dim % self.num_heads:
            raise BadInput(f"model.embed_dim={self.embed_dim} is not divisible by "
                           f"num_heads={self.num_heads}")
        if self.embed_dim % self.conv_pos_groups:
            raise BadInput(f"model.embed_dim={self.embed_dim} is not divisible by "
                           f"conv_pos_groups={self.conv_pos_groups}")
        if not 0.0 <= self.mask_prob <= 1.0:
            raise BadInput(f"model.mask_prob must be in [0, 1], got {self.mask_prob}")
        if self.pred_masked_weight < 0 or self.pred_nomask_weight < 0 or \
                self.pred_masked_weight + self.pred_nomask_weight == 0:
            raise BadInput("model.pred_masked_weight and pred_nomask_weight must be >= 0 and not both 0, "
                           f"got {self.pred_masked_weight} and {self.pred_nomask_weight}")
        if self.mask_length < 1:
            raise BadInput(f"model.mask_length must be >= 1, got {self.mask_length}")

    @property
    def conv_dim(self) -> int:
        """Channels out of the conv extractor."""
        return self.conv_layers[-1][0]

    @property
    def receptive_field(self) -> int:
        """Samples needed for one frame (400 for the base extractor)."""
        rf = 1
        for _, k, s in reversed(self.conv_layers):
            rf = (rf - 1) * s + k
        return rf

    @property
    def total_stride(self) -> int:
        """Samples per frame (320 for the base extractor)."""
        out = 1
        for _, _, s in self.conv_layers:
            out *= s
        return out

    @property
    def frame_rate(self) -> int:
        """Frames per second at ``SAMPLE_RATE`` (50 for the base extractor)."""
        return SAMPLE_RATE // self.total_stride

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists); inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["conv_layers"] = [list(c) for c in self.conv_layers]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubertConfig:
        from mhubert.config import from_dict

        return from_dict(cls, dict(data), "model")

    @classmethod
    def preset(cls, name: str = "base", overrides: dict[str, Any] | list[str] | None = None
               ) -> HubertConfig:
        """``HubertConfig.preset("tiny")``: the ``model:`` section of a preset."""
        from mhubert.config import from_preset

        return from_preset(cls, "model", name, overrides)
