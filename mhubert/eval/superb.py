"""The ``eval superb`` stage: one ML-SUPERB-style probe of one frozen upstream on one corpus.

    run_superb("fbank" | model URI, manifest URL, out URL, task="asr", train_per_lang="10min")

writes to ``out``: ``metrics.json`` (the result, schema below), ``cer_per_language.png`` (ASR tasks),
``lid_confusion.png`` and ``lid_confusion.json`` (LID tasks: rows true, columns predicted languages,
``none`` for no language token), ``splits.json`` (what was trained and tested on), ``training.json``
(loss curves), ``predictions.tsv``, then ``_SUCCESS``. Features are cached in ``<out>/cache`` unless
another cache directory is given (the benchmark shares one between probe seeds).

``metrics.json``: ``{"task", "upstream", "train_per_lang", "standard", "seed", "steps", "layer_weights",
"cer": {"overall", "per_language"}, "lid_accuracy"}``; ``cer`` for ``asr`` and ``asr+lid``,
``lid_accuracy`` for ``lid`` and ``asr+lid``. In ``asr+lid`` the language is the first decoded language
token and the CER is computed on the text without language tokens.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.eval.corpus import Utterance, load_corpus
from mhubert.eval.metrics import cer_by_language, cer_plot, confusion, confusion_plot, lid_accuracy
from mhubert.eval.probe import ProbeConfig, train_probe
from mhubert.eval.splits import SplitConfig, is_standard, make_splits
from mhubert.eval.text import Vocabulary, check_task, lang_token, normalize, split_prediction, target_tokens
from mhubert.eval.upstream import cached_features, load_upstream

log = logging.getLogger(__name__)

METRICS = "metrics.json"
CER_PNG = "cer_per_language.png"
LID_PNG = "lid_confusion.png"
LID_JSON = "lid_confusion.json"


def _usable(utts: list[Utterance], task: str) -> tuple[list[Utterance], list[str], dict[str, int]]:
    """Utterances the task can use, their normalised texts, and counts of what was left out."""
    if task == "lid":
        return utts, [""] * len(utts), {}
    kept, texts, dropped = [], [], {"no_transcript": 0, "empty_after_normalisation": 0}
    for u in utts:
        if u.text is None:
            dropped["no_transcript"] += 1
            continue
        t = normalize(u.text)
        if not t:
            dropped["empty_after_normalisation"] += 1
            continue
        kept.append(u)
        texts.append(t)
    if not kept:
        raise BadInput(f"task {task} needs transcripts: no utterance has one (utterances.tsv next to the "
                       f"manifest, column 'text')")
    if dropped["no_transcript"]:
        log.warning("%d utterances have no transcript and are left out", dropped["no_transcript"])
    return kept, texts, dropped


def _predictions_tsv(rows: list[tuple[str, str, str, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["path", "lang", "predicted_lang", "reference", "hypothesis"])
    w.writerows(rows)
    return buf.getvalue()


def run_superb(model: str, manifest: str, out: str, task: str = "asr", train_per_lang: str = "10min",
               max_steps: int | None = None, seed: int = 0, few_shot: Sequence[str] = (),
               cache_dir: str | None = None, probe: ProbeConfig | None = None,
               device: str = "cpu", split: SplitConfig | None = None) -> dict:
    """Train and test one probe; returns the metrics dict written to ``<out>/metrics.json``.
    ``split`` sets the dev/test limits too (its duration, few-shot languages and seed are replaced
    by ``train_per_lang``, ``few_shot`` and ``seed``)."""
    check_task(task)
    split_cfg = replace(split or SplitConfig(), train_per_lang=train_per_lang, few_shot=tuple(few_shot),
                        seed=seed)
    probe = probe or ProbeConfig()
    probe = replace(probe, seed=seed, **({"max_steps": max_steps} if max_steps is not None else {}))
    utts, texts, dropped = _usable(load_corpus(manifest), task)
    splits = make_splits([u.lang for u in utts], [u.seconds for u in utts], [u.speaker for u in utts],
                         split_cfg)
    upstream = load_upstream(model, device)
    part = {"train": splits.train, "dev": splits.dev, "test": splits.test}
    urls = [utts[i].url for ix in part.values() for i in ix]
    cached = dict(zip(urls, cached_features(upstream, urls, cache_dir or storage.join(out, "cache")),
                      strict=True))
    tokens = {name: [target_tokens(task, utts[i].lang, texts[i]) for i in ix] for name, ix in part.items()}
    lang_tokens = [[lang_token(u.lang) for u in utts]] if task != "asr" else []
    vocab = Vocabulary.build([*tokens["train"], *lang_tokens])
    feats = {name: [cached[utts[i].url] for i in ix] for name, ix in part.items()}
    result = train_probe(feats["train"], [vocab.encode(t) for t in tokens["train"]],
                         feats["dev"], [vocab.encode(t) for t in tokens["dev"]],
                         feats["test"], len(vocab), upstream.frame_rate, probe, device=device)

    test = [utts[i] for i in splits.test]
    refs = [texts[i] for i in splits.test]
    pred_lang, hyps = zip(*(split_prediction(vocab.decode(p)) for p in result.predictions), strict=True)
    metrics: dict = {"task": task, "upstream": model, "train_per_lang": train_per_lang,
                     "standard": is_standard(train_per_lang), "seed": seed, "steps": result.steps,
                     "layer_weights": result.layer_weights}
    title = f"{upstream.name}, {task}, {train_per_lang}/language, seed {seed}"
    if task in ("asr", "asr+lid"):
        metrics["cer"] = cer_by_language([u.lang for u in test], refs, list(hyps))
    if task in ("lid", "asr+lid"):
        metrics["lid_accuracy"] = lid_accuracy([u.lang for u in test], list(pred_lang))

    if "cer" in metrics:
        storage.atomic_write(storage.join(out, CER_PNG), cer_plot(metrics["cer"]["per_language"], title))
    if "lid_accuracy" in metrics:
        storage.atomic_write(storage.join(out, LID_PNG),
                             confusion_plot([u.lang for u in test], list(pred_lang), title))
        rows, cols, cm = confusion([u.lang for u in test], list(pred_lang))
        storage.atomic_write_json(storage.join(out, LID_JSON),
                                  {"labels": rows, "predicted": cols, "matrix": cm.tolist()})
    storage.atomic_write_json(storage.join(out, "splits.json"), {
        **splits.to_dict(), "left_out": dropped,
        "paths": {name: [utts[i].path for i in ix] for name, ix in part.items()}})
    storage.atomic_write_json(storage.join(out, "training.json"), {
        "best_step": result.best_step, "train_loss": result.train_loss, "dev_loss": result.dev_loss,
        "vocabulary": list(vocab.tokens), "probe": asdict(probe)})
    storage.atomic_write_text(storage.join(out, "predictions.tsv"), _predictions_tsv(
        [(u.path, u.lang, pl or "", r if task != "lid" else "", h if task != "lid" else "")
         for u, pl, r, h in zip(test, pred_lang, refs, hyps, strict=True)]))
    storage.atomic_write_json(storage.join(out, METRICS), metrics)
    storage.write_marker(out, {"task": task, "upstream": model})
    return metrics
