"""Stage 3: label one shard per task (``mhubert cluster assign``), then merge the shards (fan-in)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def assign_shard(item: dict) -> str:
    """Write the labels of shard ``item["shard"]`` of ``item["num_shards"]`` (a shard already written
    from the same index is kept). ``item`` is one entry of :func:`components.cluster.cluster`'s
    shards. Returns the labels directory URL."""
    from components._common import mhubert

    args = ["cluster", "assign", "--manifest", item["manifest"], "--index", item["index"],
            "--labels", item["labels"], "--features", item["features"], "--layer", int(item["layer"]),
            "--shard", int(item["shard"]), "--num-shards", int(item["num_shards"]),
            "--preset", item["preset"], "--quiet"]
    if item.get("model"):
        args += ["--model", item["model"]]
    for o in item.get("overrides") or []:  # the run's clustering overrides (label_method, ...)
        args += ["--set", o]
    if item.get("force"):
        args += ["--force"]
    mhubert(*args)
    return item["labels"]


@dsl.component(**COMPONENT_OPTIONS)
def merge_labels(shards: list[str], labels: Output[Dataset], metrics: Output[Metrics],
                 sizes: Output[HTML], on_change: str = "stop") -> str:
    """Merge the shard labels (``mhubert cluster merge``) into one committed
    :class:`mhubert.artifacts.Labels`, and publish the cluster-size histogram. Returns its URL."""
    import numpy as np

    from components._common import figures, histogram_png, log_metrics, mhubert, png_html, write_uri
    from mhubert.artifacts import Labels
    from mhubert.errors import BadInput

    dirs = sorted(set(shards))
    if len(dirs) != 1:
        raise BadInput(f"shards of one iteration must share a labels directory, got {dirs}")
    art = Labels(dirs[0])
    mhubert("cluster", "merge", "--labels", art.url, "--num-shards", len(shards), "--quiet",
            *(["--force"] if on_change == "force" else []))
    info = figures(art)
    flat, offsets = art.read()
    k = int(info.get("num_clusters") or (int(flat.max()) + 1 if flat.size else 0))
    counts = np.bincount(flat.astype(np.int64), minlength=k)
    p = counts[counts > 0] / max(1, counts.sum())
    log_metrics(metrics, {"frames": int(flat.size), "utterances": len(offsets) - 1, "num_clusters": k,
                          "used_clusters": int((counts > 0).sum()),
                          "cluster_entropy_bits": float(-(p * np.log2(p)).sum()),
                          "label_rate": info.get("label_rate")})
    write_uri(labels, art.url, **{k2: v for k2, v in info.items() if isinstance(v, (int, float, str))})
    png = histogram_png(counts.tolist(), f"Cluster sizes (K={k})", "cluster (sorted)", "frames")
    with open(sizes.path, "w") as f:
        f.write(png_html("Cluster sizes", png))
    return art.url
