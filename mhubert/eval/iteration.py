"""One pipeline iteration's probes: :func:`mhubert.eval.superb.run_superb` for each task of the
``superb`` preset section, on the iteration's model and (once per pipeline run) on FBANK.

Layout under the iteration's ``eval/superb/``: ``<upstream>/<task>/`` (``model`` or ``fbank``; task
``asr+lid`` as ``asr_lid``), each a committed ``eval superb`` output with its ``metrics.json``, and
``cache/`` (the frozen features, shared by the tasks).
"""

from __future__ import annotations

import logging

from mhubert import storage
from mhubert.eval.config import SuperbConfig
from mhubert.eval.corpus import load_corpus
from mhubert.eval.metrics import headline
from mhubert.eval.superb import LID_JSON, METRICS, run_superb
from mhubert.eval.upstream import FBANK

MODEL = "model"
UPSTREAMS = (FBANK, MODEL)

log = logging.getLogger(__name__)


def probe_url(superb_url: str, upstream: str, task: str) -> str:
    return storage.join(superb_url, upstream, task.replace("+", "_"))


def run_probes(model_uri: str, manifest: str, superb_url: str, cfg: SuperbConfig, baseline: bool = False,
               device: str = "cpu") -> dict[str, dict[str, dict]]:
    """Train every probe of ``cfg`` on ``model_uri`` (and FBANK with ``baseline`` and
    ``cfg.baseline``); returns ``{upstream: {task: metrics}}``. On a corpus without transcripts the
    ASR tasks are left out (``asr+lid`` becomes ``lid``), with a warning: a pipeline run on a corpus
    that has none still gets its LID probe."""
    tasks = tasks_for(cfg.task_list, any(u.text for u in load_corpus(manifest)))
    ups = {MODEL: model_uri, **({FBANK: FBANK} if baseline and cfg.baseline else {})}
    out: dict[str, dict[str, dict]] = {}
    for name, uri in ups.items():
        for task in tasks:
            out.setdefault(name, {})[task] = run_superb(
                uri, manifest, probe_url(superb_url, name, task), task=task,
                train_per_lang=cfg.train_per_lang, seed=cfg.seed, probe=cfg.probe(), split=cfg.split(),
                cache_dir=storage.join(superb_url, "cache"), device=device)
    return out


def tasks_for(tasks: list[str], has_transcripts: bool) -> list[str]:
    """``tasks``, or without transcripts their LID part only (``asr`` dropped, ``asr+lid`` -> ``lid``)."""
    if has_transcripts:
        return list(tasks)
    kept = list(dict.fromkeys("lid" for t in tasks if "lid" in t.split("+")))
    if kept != list(tasks):
        log.warning("the corpus has no transcripts (utterances.tsv, column text): probing %s instead of %s",
                    ", ".join(kept) or "nothing", ", ".join(tasks))
    return kept


def read_probes(superb_url: str) -> dict[str, dict[str, dict]]:
    """The committed probes under ``superb_url``: ``{upstream: {task: metrics}}`` (``{}`` if none)."""
    out: dict[str, dict[str, dict]] = {}
    for name in UPSTREAMS:
        for task in ("lid", "asr", "asr+lid"):
            url = probe_url(superb_url, name, task)
            if storage.is_committed(url) and storage.exists(storage.join(url, METRICS)):
                out.setdefault(name, {})[task] = storage.read_json(storage.join(url, METRICS))
    return out


def flat_metrics(results: dict[str, dict[str, dict]]) -> dict[str, float]:
    """``{"<task>_cer": x, "<task>_lid_accuracy": y, "fbank_<task>_cer": ...}`` (task ``asr+lid``
    as ``asr_lid``): the numbers a KFP Metrics artifact shows."""
    flat: dict[str, float] = {}
    for name, by_task in results.items():
        prefix = "" if name == MODEL else f"{name}_"
        for task, m in by_task.items():
            slug = task.replace("+", "_")
            if "cer" in m:
                flat[f"{prefix}{slug}_cer"] = float(m["cer"]["overall"])
            if "lid_accuracy" in m:
                flat[f"{prefix}{slug}_lid_accuracy"] = float(m["lid_accuracy"])
    return flat


def upstream_headline(by_task: dict[str, dict]) -> dict[str, float]:
    """One CER and one LID accuracy of an upstream: from ``asr+lid`` when it ran, else from ``asr``
    and ``lid``."""
    out: dict[str, float] = {}
    for task in ("asr+lid", "asr", "lid"):
        for k, v in headline(by_task.get(task) or {}).items():
            out.setdefault(k, v)
    return out


def lid_confusion(superb_url: str, by_task: dict[str, dict]) -> tuple[list[str], list[list[int]]] | None:
    """The model's LID confusion matrix as square (categories, counts), ``none`` (no language token
    decoded) a category of its own; from ``lid`` when it ran, else ``asr+lid``; None without either."""
    task = next((t for t in ("lid", "asr+lid") if t in by_task), None)
    if task is None:
        return None
    cm = storage.read_json(storage.join(probe_url(superb_url, MODEL, task), LID_JSON))
    cats = list(cm["predicted"])
    rows = {lab: [int(v) for v in row] for lab, row in zip(cm["labels"], cm["matrix"], strict=True)}
    return cats, [rows.get(c, [0] * len(cats)) for c in cats]
