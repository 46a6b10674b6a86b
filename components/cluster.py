"""Stage 2: sample features under a memory budget and fit the faiss index (``mhubert cluster``)."""

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def cluster(manifest_uri: str, output_root: str, iteration: int, features: str, layer: int,
            label_rate: int, num_clusters: int, num_shards: int, preset: str, index: Output[Artifact],
            sample_stats: Output[Metrics], model_uri: str = "", init_index: str = "",
            memory_budget_gb: float = 0.0,
            overrides: list[str] = [],  # noqa: B006 (KFP needs a literal default)
            on_change: str = "stop") -> list:
    """Fit the k-means index of one iteration (``RunLayout(output_root).iteration(N).clustering``).

    ``features`` is ``mfcc`` (iteration 1) or ``hubert`` (layer ``layer`` of ``model_uri``). With
    ``init_index`` (e.g. a published mHuBERT-147 index) the fit is skipped and that index is used.
    ``memory_budget_gb`` 0 keeps the preset's budget; ``overrides`` (``key=value``) change other
    clustering options (e.g. ``mode=exact``). ``on_change`` is passed to both stages (they reuse a
    result only when it was made the same way). ``label_rate`` (100 for MFCC, 50 for HuBERT) travels
    with the work items. Returns one work item per label shard: a dict carrying every URL the shard
    task needs (the index URL included; it is also the ``index`` artifact's ``uri`` metadata, and
    ``overrides``: ``label_method`` and ``hnsw_ef_search`` are the labelling's settings). A
    single output, because kfp.local 2.17 cannot loop over one of several named outputs.
    """
    from components._common import figures, log_metrics, mhubert, write_uri
    from mhubert.artifacts import RunLayout
    from mhubert.errors import BadInput

    if features not in ("mfcc", "hubert"):
        raise BadInput(f"features must be mfcc or hubert, got {features!r}")
    if features == "hubert" and not model_uri:
        raise BadInput(f"iteration {iteration} clusters HuBERT features: a model_uri is required")
    if num_shards < 1:
        raise BadInput(f"num_shards must be >= 1, got {num_shards}")
    it = RunLayout(output_root).iteration(iteration)
    clustering = it.clustering
    feat = ["--features", features, "--layer", layer]
    if features == "hubert":
        feat += ["--model", model_uri]
    if init_index:
        index_uri = init_index
        info = {"reused_index": 1}
    else:
        sets = [a for o in overrides for a in ("--set", o)]
        decide = ["--force"] if on_change == "force" else []  # the clustering stages are not resumable
        budget = ["--budget-gb", memory_budget_gb] if memory_budget_gb > 0 else []
        mhubert("cluster", "sample", "--manifest", manifest_uri, "--out", clustering.url, "--preset", preset,
                "--num-clusters", num_clusters, "--quiet", *feat, *budget, *sets, *decide)
        mhubert("cluster", "fit", "--out", clustering.url, "--preset", preset, "--num-clusters", num_clusters,
                "--quiet", *sets, *decide)
        index_uri = clustering.index.index_url
        info = figures(clustering.sample)
    log_metrics(sample_stats, {**info, "num_clusters": num_clusters})
    write_uri(index, index_uri, iteration=iteration, features=features, layer=layer)
    return [{"manifest": manifest_uri, "index": index_uri, "clustering": clustering.url, "features": features,
             "layer": layer, "model": model_uri, "label_rate": label_rate, "shard": i,
             "num_shards": num_shards, "labels": it.labels.url, "preset": preset,
             "overrides": list(overrides), "force": on_change == "force"}
            for i in range(num_shards)]
