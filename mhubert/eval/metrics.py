"""CER, LID accuracy, their plots, and a relative SUPERB-style score.

CER is character edit distance (``torchaudio.functional.edit_distance``, a maintained Levenshtein
implementation) summed over utterances, divided by the number of reference characters, as espnet and
jiwer compute corpus CER. Spaces count as characters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torchaudio.functional as AF
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from mhubert.plotting import figure_png

RELATIVE_SCORE_NOTE = ("relative score: each metric scaled between this run's FBANK (0) and its best "
                       "upstream (1000), then averaged; NOT the ML-SUPERB leaderboard's SUPERB_s")
LOWER_IS_BETTER = {"cer": True, "lid_accuracy": False}


def edit_distance(ref: str, hyp: str) -> int:
    return int(AF.edit_distance(list(ref), list(hyp)))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CER: total character edits / total reference characters."""
    if len(refs) != len(hyps):
        raise ValueError("refs and hyps differ in length")
    chars = sum(len(r) for r in refs)
    if chars == 0:
        return 0.0 if all(not h for h in hyps) else 1.0
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)) / chars


def cer_by_language(langs: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """``{"overall": x, "per_language": {lang: x}}``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        groups[lang].append(i)
    per = {lang: round(cer([refs[i] for i in ix], [hyps[i] for i in ix]), 6)
           for lang, ix in sorted(groups.items())}
    return {"overall": round(cer(refs, hyps), 6), "per_language": per}


def lid_accuracy(true: Sequence[str], pred: Sequence[str | None]) -> float:
    if not true:
        return 0.0
    return round(sum(t == p for t, p in zip(true, pred, strict=True)) / len(true), 6)


def cer_plot(per_language: Mapping[str, float], title: str) -> bytes:
    langs = sorted(per_language)
    fig = Figure(figsize=(max(4.0, 0.6 * len(langs) + 2), 3.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(langs, [100 * per_language[k] for k in langs], color="tab:blue")
    ax.set_ylabel("CER (%)")
    ax.set_title(title)
    return figure_png(fig)


def confusion(true: Sequence[str], pred: Sequence[str | None]) -> tuple[list[str], list[str], np.ndarray]:
    """(row labels, column labels, counts): rows are the true languages, columns the predicted ones
    plus ``none`` when some prediction had no (known) language token."""
    labels = sorted(set(true))
    pred_l = [p if p in labels else "none" for p in pred]
    cols = labels + (["none"] if "none" in pred_l else [])
    return labels, cols, confusion_matrix(list(true), pred_l, labels=cols)[: len(labels)]


def confusion_plot(true: Sequence[str], pred: Sequence[str | None], title: str) -> bytes:
    """LID confusion matrix PNG (see :func:`confusion`)."""
    labels, cols, cm = confusion(true, pred)
    fig = Figure(figsize=(max(4.0, 0.5 * len(cols) + 2), max(3.5, 0.5 * len(labels) + 1.5)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    return figure_png(fig)


def headline(metrics: Mapping) -> dict[str, float]:
    """{"cer": overall CER, "lid_accuracy": x} as present in a metrics.json."""
    out = {}
    if "cer" in metrics:
        out["cer"] = float(metrics["cer"]["overall"])
    if "lid_accuracy" in metrics:
        out["lid_accuracy"] = float(metrics["lid_accuracy"])
    return out


def relative_scores(results: Mapping[str, Mapping[str, float]], baseline: str = "fbank") -> dict:
    """Per upstream, the mean over metrics of 1000 * (m - m_baseline) / (m_best - m_baseline), where
    best is the best upstream of *these* results (min CER, max accuracy). ``results``: upstream ->
    headline metrics; the baseline must be among them. Metrics where the best equals the baseline are
    skipped."""
    if baseline not in results:
        raise ValueError(f"the baseline {baseline!r} is not among the results")
    names = sorted({k for r in results.values() for k in r})
    scores: dict[str, float | None] = {}
    for up, r in results.items():
        parts = []
        for m in names:
            if m not in r or m not in results[baseline]:
                continue
            vals = [x[m] for x in results.values() if m in x]
            best = min(vals) if LOWER_IS_BETTER[m] else max(vals)
            base = results[baseline][m]
            if best != base:
                parts.append(1000.0 * (r[m] - base) / (best - base))
        scores[up] = round(float(np.mean(parts)), 1) if parts else None
    return {"scores": scores, "metrics": names, "note": RELATIVE_SCORE_NOTE}
