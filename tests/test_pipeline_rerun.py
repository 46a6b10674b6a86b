"""Issue 15: a second ``pipeline run --local`` (kfp.local) on a root that holds a finished run, with
``--force`` and other settings: more updates, and another labelling method (``--cluster-set
label_method=exact``, which must reach ``cluster assign``). What did not change is reused, each
stage saying so; what did is recomputed (labels, training from scratch), and the labels are the
ones ``mhubert cluster assign --set clustering.label_method=exact`` gives on the same inputs.

The first run's results are made by the library commands the components run, with the same
arguments (components/prepare.py, cluster.py, assign.py, train.py), in seconds; the other cases of
the stale-result rule through kfp.local (same settings reused, more updates stopping before any
work, ``--resume``) are tests/test_pipeline_s3.py's, before any stage in
tests/test_pipeline_preflight.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mhubert.cli import main

# a factory index whose HNSW search is approximate (M=4, efSearch=1): its HNSW and exact labels differ
CLUSTER_SETS = ["num_clusters=32", "index_factory=OPQ4_40,IVF{K}_HNSW4,PQ4x4fsr", "opq_niter=2",
                "hnsw_ef_search=1", "kmeans_device=cpu", "memory_budget_gb=0.002"]
TRAIN_SETS = ["train.max_update=2", "train.log_interval=1"]


def _wav(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32)
    sf.write(str(path), x, 16000, subtype="PCM_16")


def _sets(items: list[str]) -> list[str]:
    return [a for o in items for a in ("--set", o)]


@pytest.fixture(scope="module")
def finished_root(tmp_path_factory):
    """A root as a one-iteration tiny run with CLUSTER_SETS and TRAIN_SETS leaves it (labels by the
    index's own HNSW search, the default), made by the components' commands."""
    from mhubert.artifacts import RunLayout
    from mhubert.config import iteration_schedule, iteration_train_overrides
    from mhubert.train.__main__ import main as train_main

    base = tmp_path_factory.mktemp("rerun")
    corpus, root = base / "corpus", str(base / "run")
    for lang in ("en", "fr"):
        for i in range(3):
            _wav(corpus / "ds1" / lang / f"{i}.wav", 2.5, i + (10 if lang == "fr" else 0))
    run = RunLayout(root)
    it = run.iteration(1)
    assert main(["corpus", "import", "--format", "dir", "--src", str(corpus), "--out", run.corpus.url,
                 "--min-seconds", "2.0", "--max-seconds", "30.0", "--quiet"]) == 0
    manifest = run.corpus.manifest_url
    k = ["--num-clusters", str(iteration_schedule("tiny")[0]["num_clusters"])]  # the --set wins
    feat = ["--features", "mfcc", "--layer", "0"]
    assert main(["cluster", "sample", "--manifest", manifest, "--out", it.clustering.url, "--preset", "tiny",
                 *k, "--quiet", *feat, *_sets(CLUSTER_SETS)]) == 0
    assert main(["cluster", "fit", "--out", it.clustering.url, "--preset", "tiny", *k, "--quiet",
                 *_sets(CLUSTER_SETS)]) == 0
    assert main(["cluster", "assign", "--manifest", manifest, "--index", it.clustering.index.index_url,
                 "--labels", it.labels.url, *feat, "--shard", "0", "--num-shards", "1", "--preset", "tiny",
                 "--quiet", *_sets(CLUSTER_SETS)]) == 0
    assert main(["cluster", "merge", "--labels", it.labels.url, "--num-shards", "1", "--quiet"]) == 0
    assert train_main(["--preset", "tiny", "--manifest", manifest, "--labels", it.labels.url, "--out",
                       it.train.url, *_sets(iteration_train_overrides("tiny", 1, TRAIN_SETS))]) == 0
    assert it.labels.info["label_method"] == "hnsw" and it.train.info["step"] == 2
    return {"corpus": str(corpus), "root": root}


@pytest.mark.slow
@pytest.mark.timeout(900)  # one kfp.local run of seven tasks: ~70 s on 2 idle cores, 150 s at load 17
def test_force_recomputes_what_changed_and_reuses_the_rest(finished_root, tmp_path, capsys):
    from mhubert.artifacts import Labels, RunLayout

    run = RunLayout(finished_root["root"])
    it = run.iteration(1)
    kept = (run.corpus, it.clustering.sample, it.clustering.index)
    before = {a.url: open(a.marker_url).read() for a in (*kept, it.labels, it.train)}
    hnsw_labels, _ = it.labels.read()
    old_train = it.train.fingerprint

    cmd = ["pipeline", "run", "--local", "--corpus", finished_root["corpus"], "--root", finished_root["root"],
           "--preset", "tiny", "--iterations", "1", "--shards", "1", "--no-lid", "--set", "superb.tasks=none",
           *_sets(["train.max_update=3", "train.log_interval=1"]),
           *[a for o in [*CLUSTER_SETS, "label_method=exact"] for a in ("--cluster-set", o)], "--force"]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "iter1 cluster"):
        assert re.search(rf"^ok {stage}\s+\d+\.\d s  reused", out, re.M), (stage, out)
    for stage in ("iter1 merge", "iter1 train"):
        line = re.search(rf"^ok {stage}\s+\d+\.\d s  (.*)$", out, re.M)
        assert line and not line.group(1).startswith("reused"), (stage, out)
    assert re.search(r"^ok iter1 train\s+\d+\.\d s  3 updates", out, re.M), out
    # the clustering sample's budget repeats this small corpus: the cluster line says how often
    assert re.search(r"^ok iter1 cluster .*sample of [\d,]+ frames \(\d+x repeats of 6 utterances\)$",
                     out, re.M), out
    # unchanged: the corpus, the sample and the index, to the byte of their markers
    assert {a.url: open(a.marker_url).read() for a in kept} == {a.url: before[a.url] for a in kept}

    # the labels: relabelled by the exact method, which their marker records, equal to the CLI's
    labels = RunLayout(finished_root["root"]).iteration(1).labels
    assert labels.marker(refresh=True).settings["clustering"]["label_method"] == "exact"
    assert labels.info["label_method"] == "exact"
    by_hand = str(tmp_path / "labels")
    assert main(["cluster", "assign", "--manifest", run.corpus.manifest_url, "--index",
                 it.clustering.index.index_url, "--labels", by_hand, "--features", "mfcc", "--layer", "0",
                 "--preset", "tiny", "--quiet", "--set", "clustering.label_method=exact"]) == 0
    assert main(["cluster", "merge", "--labels", by_hand, "--num-shards", "1", "--quiet"]) == 0
    exact, _ = Labels(by_hand).read()
    flat, _ = labels.read()
    np.testing.assert_array_equal(flat, exact)
    assert (np.asarray(hnsw_labels) != exact).any()  # the method made a difference here

    # training: computed again from scratch to 3 updates (not resumed from the 2-update run)
    train = RunLayout(finished_root["root"]).iteration(1).train
    assert train.info["step"] == 3 and train.fingerprint != old_train
    log = re.search(r"full log: (\S+\.log)", out).group(1)
    assert f"--force: removing the checkpoints and log of {train.url}" in open(log).read()
    assert "resumed from" not in open(log).read()
