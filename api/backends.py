"""Forward-pass backends: ``hidden_states(wav, lengths, top) -> [h_0, ..., h_top]`` (each (B, T, D)).

- ``torch``: ``HubertModel.hidden_states(..., num_layers=top)`` (layers above ``top`` are not run).
- ``onnx`` / ``onnx-int8``: the graph of ``mhubert.model.onnx.export_onnx`` (every hidden state as an
  output, dynamic batch and time, a lengths input) under ONNX Runtime; ``onnx-int8`` is the same graph
  with the Linear/MatMul weights quantised to int8 (ONNX Runtime dynamic quantisation). The graph is
  exported from the loaded model at start-up, so every model the torch backend serves can use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Protocol

import torch
from torch import Tensor

from mhubert.errors import BadInput

BACKENDS = ("torch", "onnx", "onnx-int8")


class Backend(Protocol):
    name: str

    def hidden_states(self, wav: Tensor, lengths: Tensor, top: int) -> list[Tensor]: ...


class TorchBackend:
    name = "torch"

    def __init__(self, model: Any, dtype: str = "float32") -> None:
        self.model, self.dtype = model, dtype

    def _autocast(self, device: torch.device):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, self.dtype))

    def hidden_states(self, wav: Tensor, lengths: Tensor, top: int) -> list[Tensor]:
        with torch.inference_mode(), self._autocast(wav.device):
            return [h.float() for h in self.model.hidden_states(wav, lengths, num_layers=top)]


class OnnxBackend:
    """ONNX Runtime on the CPU, fetching only the hidden states up to ``top``."""

    def __init__(self, model: Any, int8: bool = False, threads: int = 0) -> None:
        from mhubert.model.onnx import export_onnx, open_session, quantize_int8  # onnx, onnxruntime

        self.name = "onnx-int8" if int8 else "onnx"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            export_onnx(model.cpu(), path)
            if int8:
                path = quantize_int8(path, os.path.join(tmp, "model.int8.onnx"))
            self.session = open_session(path, threads=threads)
        self.names = [o.name for o in self.session.get_outputs()]

    def hidden_states(self, wav: Tensor, lengths: Tensor, top: int) -> list[Tensor]:
        # fetching hidden_0..hidden_top only lets ONNX Runtime skip the layers above ``top``
        outs = self.session.run(self.names[: top + 1], {"wav": wav.detach().cpu().float().numpy(),
                                                        "lengths": lengths.detach().cpu().long().numpy()})
        return [torch.from_numpy(o) for o in outs]


def make_backend(name: str, model: Any, device: torch.device, dtype: str = "float32",
                 threads: int = 0) -> Backend:
    if name == "torch":
        return TorchBackend(model, dtype)
    if name in ("onnx", "onnx-int8"):
        if device.type != "cpu":
            raise BadInput(f"backend {name} runs on the CPU; use --device cpu or --backend torch")
        return OnnxBackend(model, int8=name == "onnx-int8", threads=threads)
    raise BadInput(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
