"""The evaluate step's ML-SUPERB-style probes (:mod:`mhubert.eval.iteration`) as KFP artifacts: one
Metrics (CER and LID accuracy per task, ``fbank_``-prefixed for the baseline) and the model's LID
confusion matrix. Imported by the component body at run time."""

from __future__ import annotations

from typing import Any

from components._common import json_table, log_metrics, png_html


def superb_settings(preset: str, overrides: list[str]) -> Any:
    """The ``superb`` section of ``preset`` with ``overrides`` (``key=value``)."""
    from mhubert.config import load_sections
    from mhubert.eval.config import SuperbConfig

    return load_sections(preset, {"superb": SuperbConfig}, [f"superb.{o}" for o in overrides])["superb"]


def superb_probes(model_uri: str, manifest_uri: str, superb_url: str, preset: str, overrides: list[str],
                  baseline: bool, metrics: Any, confusion: Any, compute: bool = True) -> str:
    """Train the probes (``compute``; else read back the committed ones of a reused report), log them
    on ``metrics`` / ``confusion``; returns the report's HTML part ("" when the preset's
    ``superb.tasks`` is none). What they depend on: ``superb_settings(preset, overrides).settings()``
    and ``baseline``."""
    cfg = superb_settings(preset, overrides)
    if not cfg.task_list:
        return ""
    import torch

    from mhubert import storage
    from mhubert.eval.iteration import MODEL, flat_metrics, lid_confusion, probe_url, read_probes, run_probes
    from mhubert.eval.superb import CER_PNG, LID_PNG

    if compute:
        results = run_probes(model_uri, manifest_uri, superb_url, cfg, baseline=baseline,
                             device="cuda" if torch.cuda.is_available() else "cpu")
    else:
        results = read_probes(superb_url)
    flat = flat_metrics(results)
    log_metrics(metrics, flat)
    cm = lid_confusion(superb_url, results.get(MODEL, {}))
    if cm is not None:
        confusion.log_confusion_matrix(*cm)
    page = (f"<h3>ML-SUPERB-style probes ({cfg.train_per_lang} per language, {cfg.max_steps} updates, "
            f"seed {cfg.seed})</h3>{json_table(flat)}")
    for task in cfg.task_list:
        for name, png in ((f"{task}: CER per language", CER_PNG), (f"{task}: LID confusion", LID_PNG)):
            url = storage.join(probe_url(superb_url, MODEL, task), png)
            if storage.exists(url):
                page += png_html(name, storage.read_bytes(url))
    return page
