"""The compiled KFP IR: three unrolled iterations wired in order, the layers and K of the mHuBERT-147
recipe, ParallelFor/Collected shards with retries, and cluster-only settings (secrets, images)."""

from __future__ import annotations

import pytest
import yaml

from mhubert.cli import main
from mhubert.errors import BadInput
from pipelines.mhubert_pipeline import PipelineOptions, compile_pipeline


def _load(path):
    docs = list(yaml.safe_load_all(open(path)))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _const(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _producer(task, name):
    return task["inputs"]["parameters"][name]["taskOutputParameter"]["producerTask"]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    assert main(["pipeline", "compile", "--out", str(out)]) == 0
    return _load(out)


def test_three_iterations_in_order(full):
    spec, _ = full
    tasks = spec["root"]["dag"]["tasks"]
    clusters = {_const(t, "iteration"): name for name, t in tasks.items() if name.startswith("cluster")}
    trains = {_const(t, "iteration"): name for name, t in tasks.items() if name.startswith("train")}
    assert sorted(clusters) == sorted(trains) == [1, 2, 3]
    # iteration i+1 clusters features of the model trained in iteration i
    for i in (2, 3):
        c = tasks[clusters[i]]
        assert trains[i - 1] in c["dependentTasks"]
        assert _producer(c, "model_uri") == trains[i - 1]
        assert _const(c, "features") == "hubert" and _const(c, "label_rate") == 50
    c1 = tasks[clusters[1]]
    assert _const(c1, "features") == "mfcc" and _const(c1, "label_rate") == 100
    assert not any(t.startswith("train") for t in c1.get("dependentTasks", []))
    # the published model is the last iteration's
    assert _producer(tasks["publish"], "model_uri") == trains[3]


def test_layers_and_k(full):
    spec, _ = full
    tasks = spec["root"]["dag"]["tasks"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    by_it = {_const(t, "iteration"): t for n, t in tasks.items() if n.startswith("cluster")}
    assert by_it[2]["inputs"]["parameters"]["layer"]["componentInputParameter"] == "layer_iter2"
    assert by_it[3]["inputs"]["parameters"]["layer"]["componentInputParameter"] == "layer_iter3"
    assert params["layer_iter2"]["defaultValue"] == 6 and params["layer_iter3"]["defaultValue"] == 9
    for i in (1, 2, 3):
        assert by_it[i]["inputs"]["parameters"]["num_clusters"]["componentInputParameter"] == f"k_iter{i}"
        assert params[f"k_iter{i}"]["defaultValue"] == 1000
    for p in ("corpus_uri", "output_root", "num_shards", "nodes", "gpus_per_node", "cpu_image", "gpu_image",
              "preset", "init_model", "init_index"):
        assert p in params


def test_shards_fan_out_and_in(full):
    spec, _ = full
    tasks = spec["root"]["dag"]["tasks"]
    loops = [n for n in tasks if n.startswith("for-loop")]
    assert len(loops) == 3
    for loop in loops:
        t = tasks[loop]
        assert t["parameterIterator"]["items"]["inputParameter"].startswith("pipelinechannel--cluster")
        assert t["iteratorPolicy"]["parallelismLimit"] == 16
        body = spec["components"][t["componentRef"]["name"]]["dag"]["tasks"]
        (assign,) = body.values()
        assert assign["retryPolicy"]["maxRetryCount"] == 3
        # the shard task reads only its work item (see the module docstring)
        inputs = assign["inputs"]["parameters"]
        assert inputs["item"]["componentInputParameter"].endswith("loop-item")
    merges = [t for n, t in tasks.items() if n.startswith("merge-labels")]
    assert len(merges) == 3
    for m in merges:
        assert m["inputs"]["parameters"]["shards"]["taskOutputParameter"]["producerTask"] in loops


def test_cluster_settings(full):
    spec, platform = full
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train_exec = [e for n, e in execs.items() if n.startswith("exec-train")]
    assert len(train_exec) == 3 and all("activeDeadlineSeconds" in e for e in train_exec)
    for name, e in execs.items():
        keys = {k["envVar"] for s in e["secretAsEnv"] for k in s["keyToEnv"]}
        assert keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name
    tasks = spec["root"]["dag"]["tasks"]
    assert _const(tasks["train"], "launcher") == "trainjob"
    assert tasks["train"]["inputs"]["parameters"]["image"]["componentInputParameter"] == "gpu_image"
    # no component installs packages at run time
    for comp in spec["deploymentSpec"]["executors"].values():
        assert "pip install" not in " ".join(comp["container"]["command"] + comp["container"].get("args", []))
    res = spec["deploymentSpec"]["executors"]["exec-cluster"]["container"]["resources"]
    assert res["memoryRequest"] and res["cpuRequest"]


def test_continue_from_published_iteration2(tmp_path):
    out = compile_pipeline(str(tmp_path / "it3.yaml"), PipelineOptions(iterations=(3,)))
    spec, _ = _load(out)
    tasks = spec["root"]["dag"]["tasks"]
    clusters = [n for n in tasks if n.startswith("cluster")]
    assert clusters == ["cluster"]
    c = tasks["cluster"]
    assert _const(c, "iteration") == 3 and _const(c, "features") == "hubert"
    assert c["inputs"]["parameters"]["model_uri"]["componentInputParameter"] == "init_model"
    assert c["inputs"]["parameters"]["init_index"]["componentInputParameter"] == "init_index"
    assert c["inputs"]["parameters"]["layer"]["componentInputParameter"] == "layer_iter3"


def test_pytorchjob_launcher_for_older_clusters(tmp_path):
    out = compile_pipeline(str(tmp_path / "pj.yaml"), PipelineOptions(launcher="pytorchjob"))
    spec, platform = _load(out)
    tasks = spec["root"]["dag"]["tasks"]
    assert _const(tasks["train"], "launcher") == "pytorchjob"
    assert tasks["train"]["inputs"]["parameters"]["image"]["componentInputParameter"] == "gpu_image"
    assert platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_local_tiny_options(tmp_path):
    out = compile_pipeline(str(tmp_path / "tiny.yaml"),
                           PipelineOptions(iterations=(1, 2), launcher="local", preset="tiny"))
    spec, platform = _load(out)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["k_iter1"]["defaultValue"] == 100 and params["layer_iter2"]["defaultValue"] == 3
    tasks = spec["root"]["dag"]["tasks"]
    assert _const(tasks["train"], "launcher") == "local"
    # tiny warm-starts iteration 2 from iteration 1's model; iteration 1 starts from scratch
    assert _const(tasks["train"], "init_from") in (None, "")
    init2 = tasks["train-2"]["inputs"]["parameters"]["init_from"]
    assert init2["taskOutputParameter"]["producerTask"] == "train"
    assert not platform  # no Kubernetes settings for a local run


@pytest.mark.parametrize("its,launcher", [((1, 3), "local"), ((4,), "local"), ((), "local"),
                                          ((1,), "slurm")])
def test_bad_options(tmp_path, its, launcher):
    with pytest.raises(BadInput):
        compile_pipeline(str(tmp_path / "x.yaml"), PipelineOptions(iterations=its, launcher=launcher))


def test_cli_bad_iterations(tmp_path, capsys):
    assert main(["pipeline", "compile", "--out", str(tmp_path / "x.yaml"), "--iterations", "1,x"]) == 2
    assert "--iterations" in capsys.readouterr().err


def test_no_task_uses_the_kfp_cache(full):
    """Stages decide reuse themselves (mhubert.artifacts.decide on settings and inputs): a KFP cache
    hit would skip that decision, so no task of the compiled pipeline may enable it."""
    spec, _ = full
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    tasks = [t for d in dags for t in d["tasks"].values()]
    assert len(tasks) > 15
    enabled = [t["taskInfo"]["name"] for t in tasks if t.get("cachingOptions", {}).get("enableCache")]
    assert enabled == [], enabled
    # and the run-time choice for a committed result made otherwise is a pipeline parameter
    assert spec["root"]["inputDefinitions"]["parameters"]["on_change"]["defaultValue"] == "stop"


def test_the_clustering_overrides_reach_every_stage_that_labels(full):
    """``--cluster-set``/``--set clustering.*`` (e.g. label_method) go to the cluster task, which hands
    them to each assign shard in its work items, to the quality report of evaluate, and to publish's
    units index: no stage labels with the preset's method when the run named another."""
    spec, _ = full
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("cluster", "evaluate", "publish"):
        params = tasks[name]["inputs"]["parameters"]
        key = "overrides" if name == "cluster" else "cluster_overrides"
        assert params[key]["componentInputParameter"] == "cluster_overrides", (name, params.get(key))
