"""LID metrics: accuracy, per-language precision/recall/F1, confusion matrix (JSON + PNG).

``confusion_matrix.json`` holds ``{"labels": [...], "matrix": [[...]]}`` (rows = true language,
columns = predicted), the shape KFP's ``ClassificationMetrics.log_confusion_matrix`` takes.
Hand-written rather than sklearn's (tests pin them against sklearn) to keep sklearn out of the
serving image's import path.
"""

from __future__ import annotations

import numpy as np

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.plotting import figure_png

METRICS_FILE = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"


def confusion(y_true: list[int], y_pred: list[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows = true class, columns = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def classification_report(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro F1, per-language precision/recall/F1/support and the confusion matrix.

    F1 of a class with no true and no predicted items is 0 (sklearn's ``zero_division=0``).
    """
    if len(y_true) != len(y_pred) or not y_true:
        raise BadInput(f"need equally many true and predicted labels (got {len(y_true)}, {len(y_pred)})")
    m = confusion(y_true, y_pred, len(labels))
    tp = np.diag(m).astype(np.float64)
    support = m.sum(axis=1).astype(np.float64)
    predicted = m.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    per_language = {lab: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(support[i])} for i, lab in enumerate(labels)}
    return {"accuracy": float(tp.sum() / m.sum()), "macro_f1": float(f1.mean()),
            "num_utterances": len(y_true),
            "per_language": per_language, "confusion": {"labels": list(labels), "matrix": m.tolist()}}


def plot_confusion(matrix: list[list[int]], labels: list[str]) -> bytes:
    """PNG bytes of a confusion-matrix heat map with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted language")
    ax.set_ylabel("true language")
    if len(labels) <= 30:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center",
                        color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    ax.set_title("LID confusion matrix")
    return figure_png(fig)


def write_report(report: dict, out_dir: str) -> None:
    """``metrics.json``, ``confusion_matrix.json`` and ``confusion_matrix.png`` in ``out_dir``."""
    storage.atomic_write_json(storage.join(out_dir, METRICS_FILE), report)
    storage.atomic_write_json(storage.join(out_dir, CONFUSION_JSON), report["confusion"])
    storage.atomic_write(storage.join(out_dir, CONFUSION_PNG),
                         plot_confusion(report["confusion"]["matrix"], report["confusion"]["labels"]))
