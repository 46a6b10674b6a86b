"""Stage 5: pseudo-label quality (``mhubert cluster report``) and the LID probe (``mhubert lid``)."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(manifest_uri: str, labels_uri: str, model_uri: str, output_root: str, iteration: int,
             preset: str, quality: Output[Metrics], lid_metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML], init_index: str = "",
             lid_probe: bool = True) -> str:
    """Score the iteration: the k-means quality report of ``mhubert cluster report`` (agreement
    with exact k-means, PNMI/purity against languages, unit-LID accuracy of the labels, cluster
    sizes) of the index in
    ``<output_root>/iter<N>/clustering`` (or ``init_index`` when the iteration reused one), and,
    when ``lid_probe`` and the LID module are available, a LID head trained on the frozen model
    under ``<output_root>/iter<N>/eval`` with its held-out accuracy and confusion matrix.
    Returns the LID head URL ("" without a probe)."""
    import importlib.util

    from components._common import json_table, log_metrics, mhubert, png_html, write_artifact_json
    from mhubert import storage

    out = storage.join(output_root, f"iter{iteration}", "eval")
    cdir = storage.join(output_root, f"iter{iteration}", "clustering")
    index_uri = init_index or storage.join(cdir, "index.faiss")
    page = f"<h3>Iteration {iteration}: pseudo-label quality</h3>"
    if storage.is_committed(storage.join(cdir, "sample")):
        qjson = storage.join(cdir, "quality.json")
        if not storage.exists(qjson):
            mhubert("cluster", "report", "--out", cdir, "--manifest", manifest_uri, "--index", index_uri,
                    "--labels", labels_uri)
        q = storage.read_json(qjson)
        flat = {k: v for k, v in q.items() if not isinstance(v, dict)}
        flat.update({f"language_{k}": v for k, v in (q.get("language") or {}).items()})
        flat.update({f"reference_{k}": v for k, v in (q.get("reference") or {}).items()})
        flat.update({f"unit_lid_{k}": v for k, v in (q.get("unit_lid") or {}).items() if v is not None})
        log_metrics(quality, flat)
        page += json_table(flat)
        sizes_png = storage.join(cdir, "cluster_sizes.png")
        if storage.exists(sizes_png):
            page += png_html("Cluster sizes (clustering sample)", storage.read_bytes(sizes_png))
    else:  # a reused index has no sample here to score
        info = storage.read_json(storage.join(labels_uri, storage.SUCCESS))
        log_metrics(quality, info)
        page += f"<p>index reused ({index_uri}): no clustering sample to score</p>{json_table(info)}"
    lid_dir = ""
    if lid_probe and importlib.util.find_spec("mhubert.lid.train") is not None:
        lid_dir = storage.join(out, "lid")
        lid_eval = storage.join(out, "lid-eval")
        if not storage.exists(storage.join(lid_dir, "head.pt")):
            mhubert("lid", "train", "--model", model_uri, "--manifest", manifest_uri, "--out", lid_dir,
                    "--preset", preset)
        if not storage.exists(storage.join(lid_eval, "metrics.json")):
            mhubert("lid", "evaluate", "--model", model_uri, "--lid", lid_dir, "--manifest", manifest_uri,
                    "--out", lid_eval, "--split", "valid")
        m = storage.read_json(storage.join(lid_eval, "metrics.json"))
        log_metrics(lid_metrics, {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"),
                                  "utterances": m.get("num_utterances")})
        cm = storage.read_json(storage.join(lid_eval, "confusion_matrix.json"))
        confusion.log_confusion_matrix(list(cm["labels"]), [[int(v) for v in row] for row in cm["matrix"]])
        png = storage.join(lid_eval, "confusion_matrix.png")
        if storage.exists(png):
            page += png_html("LID probe: confusion matrix", storage.read_bytes(png))
    write_artifact_json(lid_metrics)  # also without a probe: every output artifact has a file
    write_artifact_json(confusion)
    with open(report.path, "w") as f:
        f.write(f"<html><body>{page}</body></html>")
    return lid_dir
