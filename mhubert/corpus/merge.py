"""``mhubert corpus merge A B ... --out URL``: one corpus artifact from several.

Dataset names stay unique: a name already used by an earlier input is renamed ``<name>-<k>`` (k:
the input's position, from 1) unless ``same_names`` says equal names are one dataset. The same file
twice (same full URL) is kept once; the later copy is recorded in ``rejects.tsv``. Inputs under one
root keep it; different roots give an empty root line and full URLs, which the project's reader and
the fairseq fork's ``os.path.join(root, path)`` both resolve.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mhubert import storage
from mhubert.artifacts import Corpus, Manifest, decide
from mhubert.corpus.importer import ImportResult
from mhubert.corpus.report import ALPHA, BETA, corpus_stats, read_utterances, write_corpus
from mhubert.errors import BadInput

log = logging.getLogger(__name__)


def merge_corpora(inputs: Sequence[str], out: str, *, same_names: bool = False, alpha: float = ALPHA,
                  beta: float = BETA, on_change: str = "stop") -> ImportResult:
    if len(inputs) < 2:
        raise BadInput("merge needs at least two corpora")
    corpora = [Corpus(u) for u in inputs]
    for c in corpora:
        c.marker()  # a clear error when one is not a committed corpus
    corpus = Corpus(out)
    if corpus in corpora:
        raise BadInput(f"--out {out} is one of the inputs")
    settings = {"inputs": [c.url for c in corpora], "same_names": same_names, "alpha": alpha,
                "beta": beta}
    fps = {f"corpus{k}": c.fingerprint for k, c in enumerate(corpora)}
    decision = decide(corpus, settings, fps, on_change=on_change)
    if decision == "reuse":
        return ImportResult.reused(corpus)
    mans = [c.read_manifest() for c in corpora]
    roots = {m.root for m in mans}
    root = roots.pop() if len(roots) == 1 else ""
    taken: dict[str, int] = {}
    renamed: dict[str, str] = {}
    paths, ns, langs, dsets, utter = [], [], [], [], []
    rejects: list[tuple[str, str]] = []
    where: dict[str, str] = {}
    for k, (c, m) in enumerate(zip(corpora, mans, strict=True), start=1):
        names = {}
        for d in m.datasets:
            new = d
            if d in taken and not same_names and taken[d] != k:
                new = f"{d}-{k}"
                renamed[f"{c.url}:{d}"] = new
                log.warning("dataset %r of %s is renamed %r (the name is taken)", d, c.url, new)
            taken.setdefault(d, k)
            taken.setdefault(new, k)
            names[d] = new
        side = ({u["path"]: u for u in read_utterances(c.utterances_url)}
                if storage.exists(c.utterances_url) else {})
        for i in range(len(m)):
            e = m[i]
            full = m.url_of(i)
            p = e.path if root else full
            if full in where:
                rejects.append((p, f"duplicate: the same file is in {where[full]}"))
                continue
            where[full] = c.url
            paths.append(p)
            ns.append(e.n_samples)
            langs.append(e.lang)
            dsets.append(names[e.dataset])
            u = side.get(e.path, {})
            utter.append((p, u.get("speaker", ""), u.get("source_lang", ""), u.get("text", "")))
    merged = Manifest.from_columns(root, paths, np.asarray(ns, dtype=np.int64), langs, dsets)
    stats = corpus_stats(merged, rejects, alpha, beta, renamed_datasets=renamed,
                         inputs={c.url: len(m) for c, m in zip(corpora, mans, strict=True)})
    write_corpus(corpus, merged, utter, rejects, stats, settings=settings, inputs=fps,
                 info={"inputs": len(corpora)})
    return ImportResult(merged, rejects, stats, decision, corpus)
