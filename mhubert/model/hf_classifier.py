"""The encoder plus a LID head as a transformers ``HubertForSequenceClassification`` directory, so
``transformers.pipeline("audio-classification", model=DIR)`` identifies languages like ``/v1/lid``.

Our head (``mhubert.lid.head``): per layer l the mean-pooled hidden state, standardised by the
training split's ``mean_l``/``std_l`` (per dimension), mixed with ``softmax(layer_weights)``, then a
Linear. transformers' head with ``use_weighted_layer_sum``: ``softmax(layer_weights)``-mix of the frame
hidden states, a ``projector`` Linear, mean pooling, a ``classifier`` Linear. Both are linear up to the
classifier, so (pooling and mixing commute):

- the mean term is exact: ``projector.bias = -sum_l w_l mean_l / std_l``;
- ``1/std_l(d)`` is written as ``1/(a_l c(d))`` (a_l into the layer weights, 1/c into a diagonal
  projector): exact when the standard deviations factor so (the default head: all ones), otherwise
  the closest such factorisation in log space; ``export_hf_classifier`` returns its largest relative
  error so callers can state it.

The head's tensors come in as :class:`HeadWeights` (this layer does not import the LID stage): read
from ``head.pt``'s ``state_dict`` by :func:`head_weights_from_state`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import torch

from mhubert import storage
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.model.convert import save_hf
from mhubert.model.hubert import HubertModel


@dataclass(frozen=True)
class HeadWeights:
    layer_weights: torch.Tensor   # (L+1,) logits of the layer mix
    mean: torch.Tensor            # (L+1, D)
    std: torch.Tensor             # (L+1, D)
    weight: torch.Tensor          # (C, D)
    bias: torch.Tensor            # (C,)
    labels: tuple[str, ...]


def head_weights_from_state(state: dict[str, torch.Tensor], labels: list[str]) -> HeadWeights:
    """A LID head's ``state_dict`` (``layer_weights``, ``mean``, ``std``, ``classifier.*``) + labels."""
    try:
        hw = HeadWeights(state["layer_weights"].float(), state["mean"].float(), state["std"].float(),
                         state["classifier.weight"].float(), state["classifier.bias"].float(), tuple(labels))
    except KeyError as e:
        raise BadInput(f"LID head state has no {e.args[0]!r}: not a head written by `mhubert lid train`"
                       ) from e
    if hw.weight.shape[0] != len(labels):
        raise BadInput(f"LID head has {hw.weight.shape[0]} classes but {len(labels)} labels")
    return hw


def _factor_std(std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """std (L+1, D) ~= a (L+1,) outer c (D,): least squares in log space; and the max relative error."""
    log = std.double().clamp(min=1e-12).log()
    grand = log.mean()
    a = (log.mean(dim=1) - grand).exp()
    c = (log.mean(dim=0)).exp()
    approx = a[:, None] * c[None, :]
    err = float(((approx - std.double()).abs() / std.double()).max())
    return a, c, err


def build(model: HubertModel, head: HeadWeights):
    """(transformers HubertForSequenceClassification in eval mode, max relative error of the std fit)."""
    import transformers

    n = model.cfg.num_layers + 1
    if head.mean.shape != (n, model.cfg.embed_dim):
        raise BadInput(f"LID head is for {head.mean.shape[0] - 1} layers x {head.mean.shape[1]}; the model "
                       f"has {model.cfg.num_layers} x {model.cfg.embed_dim}")
    w = torch.softmax(head.layer_weights.double(), dim=0)
    a, c, err = _factor_std(head.std)
    u = w / a
    z = u.sum()
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(model, tmp)
        cfg = transformers.HubertConfig.from_pretrained(tmp)
        cfg.use_weighted_layer_sum = True
        cfg.classifier_proj_size = model.cfg.embed_dim
        cfg.num_labels = len(head.labels)
        cfg.id2label = dict(enumerate(head.labels))
        cfg.label2id = {k: i for i, k in enumerate(head.labels)}
        clf = transformers.HubertForSequenceClassification.from_pretrained(tmp, config=cfg)
    with torch.no_grad():
        clf.layer_weights.copy_(u.log().float())
        clf.projector.weight.copy_(torch.diag(z / c).float())
        clf.projector.bias.copy_(-(w[:, None] * head.mean.double() / head.std.double()).sum(0).float())
        clf.classifier.weight.copy_(head.weight)
        clf.classifier.bias.copy_(head.bias)
    return clf.eval(), err


def export_hf_classifier(model: HubertModel, head: HeadWeights, out: str) -> float:
    """Write the directory (``config.json``, weights, ``preprocessor_config.json``) to ``out`` (any
    fsspec URL); returns the max relative error of the std factorisation (0 when exact)."""
    import transformers

    clf, err = build(model, head)
    fe = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                               do_normalize=True, return_attention_mask=True)
    with tempfile.TemporaryDirectory() as tmp:
        clf.save_pretrained(tmp)
        fe.save_pretrained(tmp)
        with open(os.path.join(tmp, "mhubert_export.json"), "w") as f:
            json.dump({"format": "hf-classifier", "std_factor_max_rel_error": err}, f)
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                storage.atomic_write(storage.join(out, name), f.read())
    return err
