"""ONNX export of the encoder: ``wav`` (B, S) float32 + ``lengths`` (B,) int64 -> ``hidden_0`` ...
``hidden_L`` (B, T, D), every hidden state of ``HubertModel.hidden_states``; batch and time axes dynamic.

The graph is traced with TorchScript's exporter (``dynamo=False``) on a padded example, so the
padding-aware path (masked GroupNorm statistics, zeroed padded frames, masked attention keys) is the
one in the graph; with every length full it gives the same numbers as the unpadded path. Measured on
the tiny model: within 1e-5 of torch on padded batches at lengths other than the export's (the test
pins 1e-4). The dynamo exporter (``torch.export``) stops at the data-dependent shortcuts of
``hidden_states`` (``bool(valid.all())``, the lengths range check), which the tracer records away;
see ``docs/benchmarks.md`` for the figures.

``quantize_int8`` applies ONNX Runtime's dynamic quantisation (int8 weights of the transformer layers'
MatMul/Gemm, activations quantised per batch at run time; the feature projection stays fp32): the
``onnx-int8`` serving backend.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from mhubert import storage
from mhubert.model.hubert import HubertModel

OPSET = 17
INPUTS = ("wav", "lengths")


def output_names(num_layers: int) -> list[str]:
    return [f"hidden_{i}" for i in range(num_layers + 1)]


class _HiddenStates(nn.Module):
    def __init__(self, model: HubertModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.hidden_states(wav, lengths))


def export_onnx(model: HubertModel, path: str, opset: int = OPSET) -> str:
    """Write the graph to local ``path`` (a temporary file when exporting to a URL: see :func:`export`)."""
    was_training = model.training
    model = model.eval().cpu()
    rf = model.cfg.receptive_field
    # a padded example: the second item is shorter, so the masked path is what gets traced
    n = max(4 * rf, 8000)
    wav = torch.randn(2, n)
    lengths = torch.tensor([n, n - 3 * rf // 2], dtype=torch.long)
    names = output_names(model.cfg.num_layers)
    axes = {"wav": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    axes.update({o: {0: "batch", 1: "frames"} for o in names})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about the data-dependent shortcuts, by design
        # the wrapper must be in eval mode: the exporter restores the wrapper's mode on the whole tree
        # afterwards (a fresh nn.Module is in training mode: dropout on in the served torch model)
        torch.onnx.export(_HiddenStates(model).eval(), (wav, lengths), path, input_names=list(INPUTS),
                          output_names=names, dynamic_axes=axes, opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    model.train(was_training)
    return path


def export(model: HubertModel, url: str, int8: bool = False) -> str:
    """Export to any fsspec URL (``model.onnx``, or ``model.int8.onnx`` with ``int8``); atomic."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = export_onnx(model, os.path.join(tmp, "model.onnx"))
        if int8:
            local = quantize_int8(local, os.path.join(tmp, "model.int8.onnx"))
        with open(local, "rb") as f:
            storage.atomic_write(url, f.read())
    return url


def fp32_nodes(path: str) -> list[str]:
    """The MatMul/Gemm nodes ``quantize_int8`` keeps in fp32: those outside the transformer layers,
    i.e. the feature projection after the conv front end (node names follow the traced module paths:
    ``/feature_proj/MatMul``, ``/layers.N/...``).

    Measured (docs/benchmarks.md): on a trained base-size model, int8 unit agreement 93.3 % with the
    projection quantised against 97.9 % without (LID top-1 agreement 99 % and 100 %), for 0.1 % of
    the encoder's MatMul FLOPs: its per-tensor uint8 activations are the conv features, whose range
    the quantiser has to cover in one scale for every frame.
    """
    import onnx

    return [n.name for n in onnx.load(path, load_external_data=False).graph.node
            if n.op_type in ("MatMul", "Gemm") and "/layers." not in n.name]


def quantize_int8(src: str, dst: str) -> str:
    """ONNX Runtime dynamic int8 quantisation of the transformer layers' MatMul/Gemm weights (the
    feature projection stays fp32: :func:`fp32_nodes`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     nodes_to_exclude=fp32_nodes(src))
    return dst


def open_session(path: str, threads: int = 0):
    """An ONNX Runtime CPU session with every graph optimisation on."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
