"""Writing a corpus artifact: its statistics (hours per language and dataset, the two-level α/β
sampling probabilities), the plot, ``rejects.tsv``, the ``utterances.tsv`` sidecar, then the commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from mhubert import storage
from mhubert.artifacts import Corpus, Manifest
from mhubert.corpus.columns import RejectSpool
from mhubert.data.dataset import DataConfig
from mhubert.data.sampling import two_level_probabilities
from mhubert.plotting import figure_png

UTTERANCE_COLUMNS = ("path", "speaker", "source_lang", "text")
SIDECAR = "utterances.tsv"
ALPHA, BETA = DataConfig.alpha, DataConfig.beta  # the data: section's defaults (mHuBERT-147's)


def _clean(s: str) -> str:
    return str(s or "").replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or reason


def probabilities(m: Manifest, alpha: float = ALPHA, beta: float = BETA) -> dict[str, Any]:
    """p_l and p_{l,d} from hours (as mHuBERT-147's size estimation) and from utterance counts (as
    its trainer's sampler)."""
    out: dict[str, Any] = {"alpha": alpha, "beta": beta}
    if not len(m):
        return out
    for by in ("hours", "utterances"):
        joint = two_level_probabilities(m.counts(by=by), alpha, beta)
        langs: Counter[str] = Counter()
        for (lang, _), p in joint.items():
            langs[lang] += p
        out[f"by_{by}"] = {"languages": dict(sorted(langs.items())),
                           "lang_dataset": {f"{k[0]}/{k[1]}": p for k, p in sorted(joint.items())}}
    return out


def corpus_stats(m: Manifest, rejects: Sequence[tuple[str, str]] | RejectSpool, alpha: float = ALPHA,
                 beta: float = BETA, **extra: Any) -> dict[str, Any]:
    st = m.stats()
    kinds = (rejects.kinds if isinstance(rejects, RejectSpool)
             else Counter(_reason_kind(r) for _, r in rejects))
    st["rejected"] = len(rejects)
    st["rejected_by_reason"] = dict(sorted(kinds.items()))
    st["probabilities"] = probabilities(m, alpha, beta)
    st.update(extra)
    return st


def plot(stats: dict[str, Any]) -> bytes:
    """Hours per language (bars, with the α/β language probability) and per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = stats["languages"]
    names = sorted(langs, key=lambda k: -langs[k]["hours"])
    hours = [langs[k]["hours"] for k in names]
    ds = stats["datasets"]
    dnames = sorted(ds, key=lambda k: -ds[k]["hours"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(max(6.0, 0.4 * len(names) + 4), 3.8),
                                 gridspec_kw={"width_ratios": [max(len(names), 1), max(len(dnames), 1)]})
    ax.bar(names, hours, color="tab:blue")
    ax.set_ylabel("hours")
    ax.set_xlabel("language")
    ax.set_title(f"{stats['total']['hours']:.3g} h in {len(names)} languages")
    if hours and min(hours) > 0 and max(hours) / min(hours) > 100:
        ax.set_yscale("log")
    p = stats.get("probabilities", {}).get("by_hours", {}).get("languages")
    if p:
        tx = ax.twinx()
        tx.plot(names, [p.get(k, 0.0) for k in names], "o-", color="tab:orange")
        tx.set_ylabel(f"p_l (α={stats['probabilities']['alpha']})", color="tab:orange")
        tx.set_ylim(bottom=0)
    bx.bar(dnames, [ds[k]["hours"] for k in dnames], color="tab:green")
    bx.set_xlabel("dataset")
    bx.set_title(f"{len(dnames)} datasets")
    for a in (ax, bx):
        a.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return figure_png(fig)


def utterances_text(rows: Iterable[tuple[str, str, str, str]]) -> str:
    return "\t".join(UTTERANCE_COLUMNS) + "\n" + "".join(
        "\t".join(_clean(x) for x in r) + "\n" for r in rows)


def read_utterances(url: str) -> list[dict[str, str]]:
    lines = storage.read_text(url).splitlines()
    return [dict(zip(UTTERANCE_COLUMNS, (ln.split("\t") + ["", "", "", ""])[:4], strict=True))
            for ln in lines[1:] if ln]


def rejects_text(rejects: Iterable[tuple[str, str]]) -> str:
    return "path\treason\n" + "".join(f"{_clean(p)}\t{_clean(r)}\n" for p, r in rejects)


def read_rejects(url: str) -> list[tuple[str, str]]:
    lines = storage.read_text(url).splitlines()[1:]
    return [tuple(ln.split("\t", 1)) for ln in lines if ln]  # type: ignore[misc]


def _write_lines(url: str, header: str, rows: Iterable[tuple[str, ...]]) -> None:
    """A TSV streamed to ``url`` in chunks (atomically): no string of the whole file."""
    with storage.atomic_open(url) as f:
        f.write(header.encode("utf-8"))
        buf: list[str] = []
        for r in rows:
            buf.append("\t".join(_clean(x) for x in r) + "\n")
            if len(buf) >= 65536:
                f.write("".join(buf).encode("utf-8"))
                buf = []
        f.write("".join(buf).encode("utf-8"))


def write_corpus(corpus: Corpus, m: Manifest, utterances: Iterable[tuple[str, str, str, str]],
                 rejects: Sequence[tuple[str, str]] | RejectSpool, stats: dict[str, Any], *,
                 settings: dict[str, Any], inputs: dict[str, str | None] | None = None,
                 info: dict[str, Any] | None = None) -> None:
    """Write every file of the corpus artifact, then commit it (marker last). The manifest, the
    sidecar and the rejects are streamed in chunks (the commit hashes them)."""
    corpus.uncommit()
    m.write(corpus.manifest_url)
    _write_lines(corpus.utterances_url, "\t".join(UTTERANCE_COLUMNS) + "\n", utterances)
    if isinstance(rejects, RejectSpool):
        with storage.atomic_open(corpus.path(Corpus.REJECTS)) as f:
            f.write(b"path\treason\n")
            for chunk in rejects.lines():
                f.write(chunk)
    else:
        _write_lines(corpus.path(Corpus.REJECTS), "path\treason\n", rejects)
    corpus.write_json(Corpus.STATS, stats)
    corpus.write_bytes(Corpus.PLOT, plot(stats))
    base = {"utterances": len(m), "rejected": len(rejects), "hours": stats["total"]["hours"],
            "languages": m.languages, "datasets": m.datasets}
    corpus.commit({**base, **(info or {})}, settings=settings, inputs=inputs or {})
