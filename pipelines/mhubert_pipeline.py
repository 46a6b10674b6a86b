"""The mHuBERT-147 pipeline: prepare → (cluster → assign shards → merge → train → evaluate) × N → publish.

``prepare`` imports the corpus (``mhubert corpus import``): ``corpus_format`` and ``corpus_sources``
(a release layout such as ``commonvoice`` or ``fleurs`` and its source URLs), or ``corpus_uri`` alone
(a ``<dataset>/<lang>/<file>`` tree or a manifest TSV).

Iterations depend on each other (iteration i clusters features of model i-1), which ParallelFor
cannot express, so they are unrolled at compile time with a Python loop: iteration 1 clusters MFCCs
(100 Hz labels), iteration 2 layer 6 of the iteration-1 model, iteration 3 layer 9 of the
iteration-2 model (50 Hz), K=1000 each (the ``base`` preset; ``tiny`` shrinks everything).
Label shards fan out with ``dsl.ParallelFor`` and fan in with ``dsl.Collected``. Each iteration
trains from scratch as in the paper, unless the preset's schedule says ``warm_start`` (``tiny`` does,
to fit 2 CPU cores): then its encoder starts from the previous iteration's model.

A run can start later in the schedule (``PipelineOptions.iterations=(3,)``) from a published model
(``init_model``) and, optionally, its faiss index (``init_index``), e.g. only iteration 3 from the
published mHuBERT-147 iteration-2 model.

Work items of a ParallelFor carry every URL their task needs (``cluster`` builds them), because the
local runner of kfp 2.17 mis-resolves task outputs passed into a loop body from outside it.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from kfp import dsl

from mhubert import images
from mhubert.config import iteration_schedule
from mhubert.errors import BadInput

S3_ENDPOINT_KEY = {"s3_endpoint": "AWS_ENDPOINT_URL"}  # ConfigMap key -> env
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
DEFAULTS_CONFIGMAP = "mhubert-defaults"  # created by charts/mhubert-platform
PIPELINE_NAME = "mhubert-147"
LAUNCHERS = ("trainjob", "pytorchjob", "local")   # trainjob: Kubeflow Trainer v2; pytorchjob: v1 operator
# Pod deadline of the train task; the job wait has its own run-time timeout (train_timeout_hours).
TRAIN_POD_TIMEOUT_S = 8 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class StageResources:
    """Kubernetes requests of one component's pod (cluster runs only)."""

    cpu: str = "2"
    memory: str = "8G"
    gpu: int = 0


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """Compile-time choices (everything else is a run-time pipeline parameter).

    ``iterations``: a contiguous run of 1..3, e.g. ``(1, 2, 3)`` or ``(3,)``.
    ``launcher``: ``trainjob`` (Kubeflow Trainer v2) or ``pytorchjob`` (v1 Training Operator) on a
    cluster, or ``local`` (torchrun on the machine running kfp.local).
    ``preset``: where the per-iteration defaults (features, layer, label rate, K) come from.
    """

    iterations: tuple[int, ...] = (1, 2, 3)
    launcher: str = "trainjob"
    preset: str = "base"
    max_parallel_shards: int = 16
    shard_retries: int = 3
    prepare: StageResources = StageResources("4", "16G")
    cluster: StageResources = StageResources("32", "900G")
    assign: StageResources = StageResources("8", "32G", gpu=1)
    train: StageResources = StageResources("1", "2G")     # it only waits on the training job
    evaluate: StageResources = StageResources("8", "32G", gpu=1)

    def validate(self) -> None:
        its = tuple(self.iterations)
        contiguous = bool(its) and list(its) == list(range(its[0], its[0] + len(its)))
        if not contiguous or any(i not in (1, 2, 3) for i in its):
            raise BadInput(f"iterations must be a contiguous run within 1..3 (e.g. 1,2,3 or 3), got {its}")
        if self.launcher not in LAUNCHERS:
            raise BadInput(f"launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        if self.max_parallel_shards < 1 or self.shard_retries < 0:
            raise BadInput("max_parallel_shards must be >= 1 and shard_retries >= 0")


def _resources(task: dsl.PipelineTask, r: StageResources) -> None:
    task.set_cpu_request(r.cpu).set_memory_request(r.memory).set_memory_limit(r.memory)
    if r.gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(r.gpu)


def build_pipeline(options: PipelineOptions | None = None) -> Callable:
    """The ``@dsl.pipeline`` function for ``options`` (compile it or call it under kfp.local)."""
    from kfp import kubernetes

    from components.assign import assign_shard, merge_labels
    from components.cluster import cluster
    from components.evaluate import evaluate
    from components.prepare import prepare
    from components.publish import publish
    from components.train import train

    opt = options or PipelineOptions()
    opt.validate()
    sched = iteration_schedule(opt.preset)
    on_cluster = opt.launcher != "local"
    first = opt.iterations[0]

    def pipeline(corpus_uri: str, output_root: str, num_shards: int = 4, preset: str = opt.preset,
                 nodes: int = 1, gpus_per_node: int = 8 if on_cluster else 1,
                 cpu_image: str = images.CPU_IMAGE, gpu_image: str = images.GPU_IMAGE,
                 k_iter1: int = sched[0]["num_clusters"], k_iter2: int = sched[1]["num_clusters"],
                 k_iter3: int = sched[2]["num_clusters"], layer_iter2: int = sched[1]["layer"],
                 layer_iter3: int = sched[2]["layer"], units_layer: int = sched[2]["layer"],
                 init_model: str = "", init_index: str = "",
                 train_overrides: list = [],  # noqa: B006 (KFP needs a literal default)
                 cluster_overrides: list = [],  # noqa: B006
                 lid_overrides: list = [],  # noqa: B006
                 superb_overrides: list = [],  # noqa: B006
                 s3_secret: str = "mhubert-s3", lid_probe: bool = True,
                 train_timeout_hours: float = 168.0, job_delete_policy: str = "on-success",
                 on_change: str = "stop", corpus_format: str = "",
                 corpus_sources: list = []) -> str:  # noqa: B006
        def on_k8s(task: dsl.PipelineTask, r: StageResources, name: str) -> dsl.PipelineTask:
            task.set_display_name(name)
            # stages decide reuse themselves (mhubert.artifacts.decide): a KFP cache hit must not
            task.set_caching_options(False)
            _resources(task, r)
            if on_cluster:
                task.set_container_image(gpu_image if r.gpu else cpu_image)
                kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS)
                kubernetes.use_config_map_as_env(task, DEFAULTS_CONFIGMAP, S3_ENDPOINT_KEY, optional=True)
            return task

        prep = on_k8s(prepare(corpus_uri=corpus_uri, output_root=output_root, on_change=on_change,
                              fmt=corpus_format, sources=corpus_sources), opt.prepare, "prepare")
        manifest = prep.outputs["Output"]
        ks = {1: k_iter1, 2: k_iter2, 3: k_iter3}
        layers = {1: sched[0]["layer"], 2: layer_iter2, 3: layer_iter3}
        model_uri: Any = init_model
        ev = None
        for n in opt.iterations:
            it = sched[n - 1]
            cl = on_k8s(cluster(manifest_uri=manifest, output_root=output_root, iteration=n,
                                features=it["features"], layer=layers[n], label_rate=it["label_rate"],
                                num_clusters=ks[n], num_shards=num_shards, preset=preset,
                                model_uri="" if it["features"] == "mfcc" else model_uri,
                                init_index=init_index if n == first else "",
                                overrides=cluster_overrides, on_change=on_change),
                        dataclasses.replace(opt.cluster, gpu=0 if it["features"] == "mfcc" else 1),
                        f"iter{n}-cluster")
            with dsl.ParallelFor(cl.outputs["Output"], parallelism=opt.max_parallel_shards) as item:
                a_res = dataclasses.replace(opt.assign, gpu=0 if it["features"] == "mfcc" else opt.assign.gpu)
                a = on_k8s(assign_shard(item=item), a_res, f"iter{n}-assign")
                a.set_retry(opt.shard_retries, backoff_duration="30s")
            mg = on_k8s(merge_labels(shards=dsl.Collected(a.output), on_change=on_change), opt.prepare,
                        f"iter{n}-merge")
            tr = on_k8s(train(manifest_uri=manifest, labels_uri=mg.outputs["Output"], output_root=output_root,
                              iteration=n, preset=preset, launcher=opt.launcher, overrides=train_overrides,
                              init_from=model_uri if it.get("warm_start") else "",
                              nodes=nodes, gpus_per_node=gpus_per_node, image=gpu_image, s3_secret=s3_secret,
                              timeout_hours=train_timeout_hours, delete_policy=job_delete_policy,
                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER if on_cluster else "",
                              on_change=on_change),
                        opt.train, f"iter{n}-train")
            if on_cluster:
                kubernetes.set_timeout(tr, TRAIN_POD_TIMEOUT_S)
            ev = on_k8s(evaluate(manifest_uri=manifest, labels_uri=mg.outputs["Output"],
                                 model_uri=tr.outputs["Output"], output_root=output_root, iteration=n,
                                 preset=preset, init_index=init_index if n == first else "",
                                 lid_probe=lid_probe, lid_overrides=lid_overrides,
                                 superb_overrides=superb_overrides, superb_baseline=n == first,
                                 on_change=on_change, cluster_overrides=cluster_overrides),
                        opt.evaluate, f"iter{n}-evaluate")
            model_uri = tr.outputs["Output"]
        # the units index is fit on the served model's features (layer units_layer): a GPU task
        pub = on_k8s(publish(model_uri=model_uri, output_root=output_root, iteration=opt.iterations[-1],
                             lid_uri=ev.outputs["Output"], manifest_uri=manifest, preset=preset,
                             units_layer=units_layer, units_clusters=k_iter3,
                             cluster_overrides=cluster_overrides, on_change=on_change),
                     dataclasses.replace(opt.cluster, gpu=1), "publish")
        return pub.outputs["Output"]

    its = ",".join(map(str, opt.iterations))
    pipeline.__doc__ = (f"mHuBERT-147 pretraining, iterations {its} ({opt.launcher} launcher, "
                        f"{opt.preset} schedule).")
    return dsl.pipeline(name=PIPELINE_NAME, description=pipeline.__doc__)(pipeline)


def compile_pipeline(out: str, options: PipelineOptions | None = None) -> str:
    """Compile to KFP IR YAML at ``out`` (a local path); returns ``out``."""
    import os

    from kfp import compiler

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), package_path=out)
    return out
