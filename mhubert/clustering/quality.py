"""Quality of a clustering run: cluster sizes, approximate-vs-exact agreement, PNMI and purity.

PNMI (HuBERT paper, §IV-B): ``I(y; z) / H(y)`` for reference labels y (language, or phones when
given) and cluster ids z, from their joint frequencies. Purity: ``E_z[max_y p(y|z)]`` (how well a
cluster predicts the reference, "phone purity"); cluster purity: ``E_y[max_z p(z|y)]``.

Unit LID (``unit_lid``): how well an utterance's language can be told from its label sequence alone,
by a logistic regression on bag-of-units histograms. Frame PNMI also rewards clusters that only
mark an utterance's voice or recording conditions (they are language-pure in a corpus where each
utterance has one language); the cross-condition accuracy does not, because it trains on some
datasets (recording conditions, voices) and tests on the others.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from mhubert import storage
from mhubert.artifacts import ClusteringSample, EvalReport, Index, Labels, Manifest
from mhubert.clustering import index as cindex
from mhubert.clustering import sample as csample
from mhubert.clustering.kmeans import exact_assign
from mhubert.errors import BadInput
from mhubert.plotting import figure_png

log = logging.getLogger(__name__)


def _joint(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Joint probability table p(y, z), (num_ref, num_hyp)."""
    ref, hyp = np.asarray(ref).ravel(), np.asarray(hyp).ravel()
    if ref.shape != hyp.shape:
        raise BadInput(f"{ref.size} reference labels but {hyp.size} cluster labels")
    if ref.size == 0:
        raise BadInput("no labels to score")
    _, r = np.unique(ref, return_inverse=True)
    _, h = np.unique(hyp, return_inverse=True)
    counts = np.zeros((r.max() + 1, h.max() + 1), dtype=np.float64)
    np.add.at(counts, (r, h), 1.0)
    return counts / ref.size


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats of a probability vector."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(ref: np.ndarray, hyp: np.ndarray) -> float:
    """I(ref; hyp) in nats."""
    pxy = _joint(ref, hyp)
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())


def pnmi(ref: np.ndarray, hyp: np.ndarray) -> float:
    """I(ref; hyp) / H(ref); 0 when the reference has a single class."""
    h = entropy(_joint(ref, hyp).sum(1))
    return mutual_information(ref, hyp) / h if h > 0 else 0.0


def purity(ref: np.ndarray, hyp: np.ndarray) -> float:
    """E_z[max_y p(y|z)] = Σ_z max_y p(y, z)."""
    return float(_joint(ref, hyp).max(0).sum())


def cluster_purity(ref: np.ndarray, hyp: np.ndarray) -> float:
    """E_y[max_z p(z|y)] = Σ_y max_z p(y, z)."""
    return float(_joint(ref, hyp).max(1).sum())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of equal labels."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape or a.size == 0:
        raise BadInput(f"cannot compare {a.size} and {b.size} labels")
    return float((a == b).mean())


def cluster_sizes(labels: np.ndarray, num_clusters: int) -> dict:
    """Counts per cluster and summary numbers (empty clusters, min/max, perplexity = exp(entropy))."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=num_clusters)
    p = counts / max(1, counts.sum())
    return {"counts": counts.tolist(), "num_clusters": int(num_clusters),
            "num_empty": int((counts == 0).sum()), "min": int(counts.min()), "max": int(counts.max()),
            "perplexity": float(np.exp(entropy(p)))}


def plot_sizes(sizes: dict) -> bytes:
    """PNG: cluster sizes sorted in decreasing order (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(np.asarray(sizes["counts"]))[::-1]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(np.arange(len(counts)), np.maximum(counts, 0.5), width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("cluster (sorted by size)")
    ax.set_ylabel("frames")
    ax.set_title(f"{sizes['num_clusters']} clusters, {sizes['num_empty']} empty, "
                 f"perplexity {sizes['perplexity']:.0f}")
    return figure_png(fig)


def unit_histograms(flat: np.ndarray, offsets: np.ndarray, num_clusters: int) -> np.ndarray:
    """(N, K) float64 relative unit frequencies of N utterances (``offsets`` (N+1,) into ``flat``)."""
    flat, offsets = np.asarray(flat, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    utt = np.repeat(np.arange(n), np.diff(offsets))
    h = np.zeros((n, num_clusters))
    np.add.at(h, (utt, flat), 1.0)
    return h / np.maximum(h.sum(1, keepdims=True), 1.0)


def unit_lid(flat: np.ndarray, offsets: np.ndarray, langs, groups=None, num_clusters: int | None = None,
             folds: int = 5, seed: int = 0) -> dict:
    """Language identification from labels alone: ``{"cv_accuracy", "cross_condition_accuracy",
    "chance", "num_utterances", "num_languages"}``.

    Each utterance becomes the square root of its unit histogram (Hellinger features), classified
    by multinomial logistic regression (sklearn, C=10). ``cv_accuracy``: stratified ``folds``-fold
    cross-validation. ``cross_condition_accuracy``: for each group (dataset) in ``groups``, train on
    the other groups and test on it, pooled over groups (None with fewer than 2 groups). ``chance``:
    the accuracy of always answering the most frequent language.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    langs = np.asarray(langs)
    n = len(offsets) - 1
    if len(langs) != n or n < 2:
        raise BadInput(f"unit LID needs one language per utterance: {len(langs)} languages, {n} utterances")
    k = int(num_clusters or (int(np.max(flat)) + 1 if len(flat) else 1))
    x = np.sqrt(unit_histograms(flat, offsets, k))
    _, counts = np.unique(langs, return_counts=True)
    out = {"num_utterances": int(n), "num_languages": int(len(counts)),
           "chance": float(counts.max() / n), "cv_accuracy": None, "cross_condition_accuracy": None}

    def clf():
        return LogisticRegression(C=10.0, max_iter=2000)

    f = min(folds, int(counts.min()))
    if len(counts) > 1 and f >= 2:
        cv = StratifiedKFold(n_splits=f, shuffle=True, random_state=seed)
        out["cv_accuracy"] = float(cross_val_score(clf(), x, langs, cv=cv).mean())
    if groups is not None:
        groups = np.asarray(groups)
        hits = total = 0
        for g in np.unique(groups):
            test, train = groups == g, groups != g
            if len(np.unique(langs[train])) < 2:
                continue
            pred = clf().fit(x[train], langs[train]).predict(x[test])
            hits += int((pred == langs[test]).sum())
            total += int(test.sum())
        if total and len(np.unique(groups)) > 1:
            out["cross_condition_accuracy"] = hits / total
    return out


def report(eval_dir: str, index_url: str, sample_dir: str, manifest_url: str,
           max_rows: int = 200_000, reference_labels: str | None = None, seed: int = 0,
           labels: str | None = None, label_method: str = "auto") -> dict:
    """Score the index on up to ``max_rows`` random rows of the clustering sample; write
    ``quality.json``, ``cluster_sizes.json`` and ``cluster_sizes.png`` into the iteration's
    :class:`~mhubert.artifacts.EvalReport` at ``eval_dir`` (the evaluation commits it).

    The sample rows are labelled by ``label_method`` (as the labels were: see
    ``ClusteringConfig.label_method``) and compared with the exact nearest original-space centroid.
    ``reference_labels``: a merged labels directory at the sample's frame rate (e.g. phone ids in
    the labels format), scored like the languages. ``labels``: the iteration's merged labels of every
    utterance of the manifest, scored by ``unit_lid`` (languages, datasets as conditions).
    """
    ci = cindex.load(index_url, storage.join(storage.parent(index_url), Index.CENTROIDS))
    method = ci.resolve_method(label_method)
    x, rows = csample.load_sample(sample_dir, max_rows=max_rows, seed=seed)
    approx = ci.label(x, method)
    centroids = ci.centroids if ci.centroids is not None else ci.original_space_centroids()
    exact = exact_assign(x, centroids)
    manifest = Manifest.read(manifest_url)
    utt = csample.row_utterances(sample_dir)[rows]
    langs = np.asarray([manifest[int(i)].lang for i in utt])
    k = ci.num_clusters
    sizes = cluster_sizes(approx, k)
    q = {"num_rows": int(len(rows)), "num_clusters": k, "mode": ci.mode, "label_method": method,
         "agreement_with_exact": agreement(approx, exact),
         "language": {"pnmi": pnmi(langs, approx), "purity": purity(langs, approx),
                      "cluster_purity": cluster_purity(langs, approx),
                      "num_languages": int(len(set(langs.tolist())))},
         "num_empty_clusters": sizes["num_empty"], "perplexity": sizes["perplexity"]}
    if reference_labels:
        flat, offsets = Labels(reference_labels).read()
        seg = np.load(io.BytesIO(ClusteringSample(sample_dir).read_bytes("segments.npy")))
        within = np.concatenate([np.arange(n) for n in seg[:, 1]])[rows] if len(seg) else rows
        pos = offsets[utt] + within
        ok = pos < offsets[utt + 1]
        if not ok.any():
            raise BadInput(f"{reference_labels} has no label for the sampled frames")
        ref = np.asarray(flat)[pos[ok]]
        q["reference"] = {"pnmi": pnmi(ref, approx[ok]), "purity": purity(ref, approx[ok]),
                          "cluster_purity": cluster_purity(ref, approx[ok]), "num_rows": int(ok.sum())}
    if labels:
        lab = Labels(labels)
        flat, offsets = lab.read()
        if len(offsets) - 1 != len(manifest):
            raise BadInput(f"{labels} has labels for {len(offsets) - 1} utterances, the manifest "
                           f"{len(manifest)}")
        q["labels_label_method"] = lab.info.get("label_method")
        q["unit_lid"] = unit_lid(flat, offsets, [e.lang for e in manifest.entries],
                                 [e.dataset for e in manifest.entries], num_clusters=k, seed=seed)
    out = EvalReport(eval_dir)
    out.write_json(EvalReport.SIZES, sizes)
    out.write_bytes(EvalReport.SIZES_PLOT, plot_sizes(sizes))
    out.write_json(EvalReport.QUALITY, q)
    log.info("quality (%s labels): agreement %.3f, language PNMI %.3f, purity %.3f", method,
             q["agreement_with_exact"], q["language"]["pnmi"], q["language"]["purity"])
    return q
