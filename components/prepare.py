"""Stage 1: the corpus artifact and its statistics (``mhubert corpus import``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def prepare(corpus_uri: str, output_root: str, manifest: Output[Dataset], stats: Output[Metrics],
            report: Output[HTML], min_seconds: float = 2.0, max_seconds: float = 30.0,
            on_change: str = "stop", fmt: str = "",
            sources: list[str] = []) -> str:  # noqa: B006 (KFP needs a literal default)
    """Import ``sources`` laid out as ``fmt`` (any format of ``mhubert corpus import``: commonvoice,
    fleurs, mls, ..., dir, tsv) into ``RunLayout(output_root).corpus``. Without ``sources``, the
    one source is ``corpus_uri`` (``<dataset>/<lang>/*`` audio, or a TSV, as ``fmt`` says or, when
    it is empty, as its name says). Returns the manifest URL."""
    from components._common import json_table, log_metrics, mhubert, png_html, write_uri
    from mhubert.artifacts import RunLayout
    from mhubert.errors import BadInput

    corpus = RunLayout(output_root).corpus
    srcs = [str(s) for s in sources] or ([corpus_uri] if corpus_uri else [])
    if not srcs:
        raise BadInput("prepare: no corpus source (corpus_uri or sources)")
    fmt = fmt or ("tsv" if len(srcs) == 1 and srcs[0].endswith((".tsv", ".txt")) else "dir")
    args = [a for s in srcs for a in ("--src", s)]
    if on_change == "force":  # --resume means nothing to an import: same settings reuse, others stop
        args += ["--force"]
    mhubert("corpus", "import", "--format", fmt, *args, "--out", corpus.url, "--min-seconds", min_seconds,
            "--max-seconds", max_seconds, "--quiet")
    st = corpus.stats()
    total = st.get("total", {})
    log_metrics(stats, {"utterances": total.get("utterances"), "hours": total.get("hours"),
                        "rejected": st.get("rejected"), "languages": len(st.get("languages", {}) or {})})
    write_uri(manifest, corpus.manifest_url, utterances=total.get("utterances"), hours=total.get("hours"))
    with open(report.path, "w") as f:
        f.write(png_html("Hours per language", corpus.read_bytes(corpus.PLOT), json_table(total)))
    return corpus.manifest_url
