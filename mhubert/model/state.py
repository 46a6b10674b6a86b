"""State-dict helpers shared by every checkpoint format: prefix stripping and checked loading."""

from __future__ import annotations

import torch

from mhubert.errors import BadInput


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes."""
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: str,
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
