"""Stage 5: pseudo-label quality (``mhubert cluster report``) and the LID probe (``mhubert lid``)."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(manifest_uri: str, labels_uri: str, model_uri: str, output_root: str, iteration: int,
             preset: str, quality: Output[Metrics], lid_metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML], lid_probe: bool = True) -> str:
    """Write ``<output_root>/iter<N>/eval``: the labels' quality report and, when ``lid_probe`` and
    the LID module are available, a LID head trained on the frozen model with its held-out accuracy
    and confusion matrix. Returns the LID head URL ("" without a probe)."""
    import importlib.util

    from components._common import json_table, log_metrics, mhubert, png_html
    from mhubert import storage

    out = storage.join(output_root, f"iter{iteration}", "eval")
    qdir = storage.join(out, "labels")
    if not storage.is_committed(qdir):
        mhubert("cluster", "report", "--labels", labels_uri, "--manifest", manifest_uri, "--out", qdir)
    q = storage.read_json(storage.join(qdir, "quality.json"))
    log_metrics(quality, q)
    page = f"<h3>Iteration {iteration}: pseudo-label quality</h3>{json_table(q)}"
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
    with open(report.path, "w") as f:
        f.write(f"<html><body>{page}</body></html>")
    return lid_dir
