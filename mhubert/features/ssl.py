"""SSL layer features for clustering iterations 2 and 3: a HuBERT layer's output at 50 Hz."""

from __future__ import annotations

import torch

from mhubert.errors import BadInput
from mhubert.model.hubert import HubertModel


def layer_features(model: HubertModel, wav: torch.Tensor, lengths: torch.Tensor | None, layer: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output of layer ``layer`` (0 = input of the first layer): feats (B, T, D), frame_lengths (B,).

    wav (B, S) float at 16 kHz, already normalised if the model was trained on normalised audio;
    lengths (B,) samples or None. Runs in eval mode without gradients and runs no layer above
    ``layer``; frames at t >= frame_lengths[b] are padding.
    """
    if not isinstance(model, HubertModel):
        raise BadInput(f"layer_features needs a HubertModel, got {type(model).__name__}")
    if wav.dim() == 1:
        wav = wav[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters())
            wav = wav.to(device=param.device, dtype=param.dtype)
            if lengths is not None:
                lengths = torch.as_tensor(lengths, device=param.device)
            return model.extract_layer(wav, lengths, layer)
    finally:
        model.train(was_training)
