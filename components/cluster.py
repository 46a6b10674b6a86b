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
            ) -> list:
    """Fit the k-means index of one iteration under ``<output_root>/iter<N>/clustering``.

    ``features`` is ``mfcc`` (iteration 1) or ``hubert`` (layer ``layer`` of ``model_uri``). With
    ``init_index`` (e.g. a published mHuBERT-147 index) the fit is skipped and that index is used.
    ``memory_budget_gb`` 0 keeps the preset's budget; ``overrides`` (``key=value``) change other
    clustering options (e.g. ``mode=exact``). ``label_rate`` (100 for MFCC, 50 for HuBERT)
    travels with the work items; the library derives it from ``features`` too. Returns one work
    item per label shard: a dict carrying every URL the shard task needs (the index URL included;
    it is also the ``index`` artifact's ``uri`` metadata). A single output, because kfp.local 2.17
    cannot loop over one of several named outputs.
    """
    from components._common import log_metrics, mhubert
    from mhubert import storage

    if features not in ("mfcc", "hubert"):
        raise ValueError(f"features must be mfcc or hubert, got {features!r}")
    if features == "hubert" and not model_uri:
        raise ValueError(f"iteration {iteration} clusters HuBERT features: a model_uri is required")
    if label_rate != (100 if features == "mfcc" else 50):
        raise ValueError(f"{features} features give {100 if features == 'mfcc' else 50} Hz labels, "
                         f"not {label_rate} Hz")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    it_dir = storage.join(output_root, f"iter{iteration}")
    cdir = storage.join(it_dir, "clustering")
    feat = ["--features", features, "--layer", layer]
    if features == "hubert":
        feat += ["--model", model_uri]
    if init_index:
        index_uri = init_index
        info = {"reused_index": 1}
    else:
        # both commands are no-ops once their results are committed (a rerun resumes)
        budget = ["--budget-gb", memory_budget_gb] if memory_budget_gb > 0 else []
        budget += [a for o in overrides for a in ("--set", o)]
        mhubert("cluster", "sample", "--manifest", manifest_uri, "--out", cdir, "--preset", preset,
                "--num-clusters", num_clusters, "--quiet", *feat, *budget)
        mhubert("cluster", "fit", "--out", cdir, "--preset", preset, "--num-clusters", num_clusters,
                "--quiet", *[a for o in overrides for a in ("--set", o)])
        index_uri = storage.join(cdir, "index.faiss")
        from mhubert.artifacts import ClusteringSample

        info = ClusteringSample(storage.join(cdir, "sample")).info
    log_metrics(sample_stats, {**info, "num_clusters": num_clusters})
    index.metadata.update({"uri": index_uri, "iteration": iteration, "features": features, "layer": layer})
    with open(index.path, "w") as f:
        f.write(index_uri + "\n")
    labels = storage.join(it_dir, "labels")
    shards = [{"manifest": manifest_uri, "index": index_uri, "clustering": cdir, "features": features,
               "layer": layer, "model": model_uri, "label_rate": label_rate, "shard": i,
               "num_shards": num_shards, "labels": labels, "preset": preset} for i in range(num_shards)]
    return shards
