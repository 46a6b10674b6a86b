"""Stage 1: the corpus manifest and its statistics (``mhubert corpus manifest``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def prepare(corpus_uri: str, output_root: str, manifest: Output[Dataset], stats: Output[Metrics],
            report: Output[HTML], min_seconds: float = 2.0, max_seconds: float = 30.0) -> str:
    """Scan ``corpus_uri`` (``<dataset>/<lang>/*`` audio, or a TSV) into ``<output_root>/corpus``.

    Returns the manifest URL. Skips the scan when ``<output_root>/corpus/_SUCCESS`` exists.
    """
    from components._common import json_table, log_metrics, mhubert, png_html
    from mhubert import storage

    out = storage.join(output_root, "corpus")
    if not storage.is_committed(out):
        src = ["--tsv", corpus_uri] if corpus_uri.endswith((".tsv", ".txt")) else ["--root", corpus_uri]
        mhubert("corpus", "manifest", *src, "--out", out, "--min-seconds", min_seconds,
                "--max-seconds", max_seconds, "--quiet")
    url = storage.join(out, "manifest.tsv")
    st = storage.read_json(storage.join(out, "stats.json"))
    total = st.get("total", {})
    log_metrics(stats, {"utterances": total.get("utterances"), "hours": total.get("hours"),
                        "rejected": st.get("rejected"), "languages": len(st.get("languages", {}) or {})})
    manifest.metadata.update({"uri": url, "utterances": total.get("utterances"), "hours": total.get("hours")})
    with open(manifest.path, "w") as f:
        f.write(url + "\n")
    png = storage.read_bytes(storage.join(out, "hours_per_language.png"))
    with open(report.path, "w") as f:
        f.write(png_html("Hours per language", png, json_table(total)))
    return url
