"""Evaluate a LID head on a manifest: every utterance, or the head's held-out split.

    mhubert lid evaluate --model URI --lid DIR --manifest URL --out DIR [--split valid|all]

Features are pooled with the options stored in the head file (as at training).
"""

from __future__ import annotations

import torch

from mhubert.artifacts import LidHead, Manifest
from mhubert.errors import BadInput
from mhubert.lid.features import SPLIT_FILE, ExtractionOptions, extract_pooled
from mhubert.lid.head import load_head
from mhubert.lid.metrics import classification_report, write_report


def evaluate_lid(model_uri: str, lid_uri: str, manifest_url: str, out_dir: str, split: str = "all",
                 batch_size: int = 8, progress: bool = True) -> dict:
    """Predict every utterance of the manifest (or the head's held-out split) and write the report
    (``metrics.json``, ``confusion_matrix.{json,png}``) into ``out_dir``, its marker last."""
    from mhubert.model import load_model

    if split not in ("all", "valid"):
        raise BadInput(f"split must be 'all' or 'valid', got {split!r}")
    head, labels = load_head(lid_uri)
    manifest = Manifest.read(manifest_url)
    indices = list(range(len(manifest)))
    if split == "valid":
        indices = LidHead(lid_uri).read_json(SPLIT_FILE)["valid"]
        if not indices:
            raise BadInput(f"{lid_uri} has an empty held-out split")
    unknown = sorted({manifest[i].lang for i in indices} - set(labels))
    if unknown:
        raise BadInput(f"manifest languages {unknown} are not among the head's labels {labels}")
    opts = ExtractionOptions.from_dict(head.extraction)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    feats = extract_pooled(load_model(model_uri), [manifest.url_of(i) for i in indices], opts, batch_size,
                           device, progress)
    with torch.no_grad():
        pred = head.to("cpu")(feats).argmax(dim=-1).tolist()
    report = classification_report([labels.index(manifest[i].lang) for i in indices], pred, labels)
    report["split"] = split
    write_report(report, out_dir)
    return report
