"""Stage 1: the corpus manifest and its statistics (``mhubert corpus manifest``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def prepare(corpus_uri: str, output_root: str, manifest: Output[Dataset], stats: Output[Metrics],
            report: Output[HTML], min_seconds: float = 2.0, max_seconds: float = 30.0,
            on_change: str = "stop") -> str:
    """Scan ``corpus_uri`` (``<dataset>/<lang>/*`` audio, or a TSV) into
    ``RunLayout(output_root).corpus``. Returns the manifest URL."""
    from components._common import json_table, log_metrics, mhubert, png_html, write_uri
    from mhubert.artifacts import RunLayout

    corpus = RunLayout(output_root).corpus
    src = ["--tsv", corpus_uri] if corpus_uri.endswith((".tsv", ".txt")) else ["--root", corpus_uri]
    if on_change == "force":  # --resume means nothing to a scan: same settings reuse, others stop
        src += ["--force"]
    mhubert("corpus", "manifest", *src, "--out", corpus.url, "--min-seconds", min_seconds,
            "--max-seconds", max_seconds, "--quiet")
    st = corpus.stats()
    total = st.get("total", {})
    log_metrics(stats, {"utterances": total.get("utterances"), "hours": total.get("hours"),
                        "rejected": st.get("rejected"), "languages": len(st.get("languages", {}) or {})})
    write_uri(manifest, corpus.manifest_url, utterances=total.get("utterances"), hours=total.get("hours"))
    with open(report.path, "w") as f:
        f.write(png_html("Hours per language", corpus.read_bytes(corpus.PLOT), json_table(total)))
    return corpus.manifest_url
