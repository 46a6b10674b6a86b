"""Stage 4: pretrain one iteration: a TrainJob (or PyTorchJob) on the cluster, or torchrun here."""

from kfp import dsl
from kfp.dsl import HTML, Metrics, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def train(manifest_uri: str, labels_uri: str, output_root: str, iteration: int, preset: str,
          model: Output[Model], metrics: Output[Metrics], loss_curve: Output[HTML],
          launcher: str = "local", overrides: list[str] = [],  # noqa: B006 (KFP needs a literal default)
          init_from: str = "", nodes: int = 1,
          gpus_per_node: int = 1, image: str = "", s3_secret: str = "mhubert-s3",
          timeout_hours: float = 168.0, run_id: str = "", delete_policy: str = "on-success",
          on_change: str = "stop") -> str:
    """Train into ``RunLayout(output_root).iteration(N).train`` with ``python -m mhubert.train`` and
    return the URL of the transformers model it writes.

    ``init_from`` (a transformers model URL) starts the encoder from that model. The preset's
    per-iteration ``train`` overrides apply before ``overrides``. ``on_change`` (``stop`` | ``resume``
    | ``force``) is the trainer's rule for a committed run made with other settings.

    ``launcher="local"`` runs ``torch.distributed.run --nproc_per_node max(1, gpus_per_node)`` here;
    ``"trainjob"`` (Kubeflow Trainer v2) or ``"pytorchjob"`` (v1 Training Operator) creates a job of
    ``nodes`` x ``gpus_per_node`` with ``image`` in the namespace of this pod, streams node 0's log here
    and waits for it, failing with the job's reason; ``delete_policy`` (on-success, always, never)
    says when the job goes. The trainer itself decides whether a committed run is reused (same
    settings), resumed or stopped on.
    """

    from components._common import figures, log_metrics, png_html, torchrun, write_uri
    from mhubert.artifacts import RunLayout
    from mhubert.config import iteration_train_overrides
    from mhubert.errors import BadInput

    if launcher not in ("local", "trainjob", "pytorchjob"):
        raise BadInput(f"launcher must be local, trainjob or pytorchjob, got {launcher!r}")
    run = RunLayout(output_root).iteration(iteration).train
    args = ["--preset", preset, "--manifest", manifest_uri, "--labels", labels_uri, "--out", run.url]
    if init_from:
        args += ["--init-from", init_from]
    for o in iteration_train_overrides(preset, iteration, list(overrides)):
        args += ["--set", o]
    if on_change != "stop":
        args += ["--on-change", on_change]
    if launcher == "local":
        torchrun(args, nproc=max(1, gpus_per_node), what=f"iter{iteration} train")
    else:
        from mhubert.jobs.launch import train_on_cluster

        train_on_cluster(launcher, args, out=run.url, iteration=iteration, image=image, nodes=nodes,
                         gpus_per_node=gpus_per_node, s3_secret=s3_secret,
                         timeout_s=timeout_hours * 3600, run_id=run_id, delete_policy=delete_policy)
    info = figures(run)
    log_metrics(metrics, {k: info.get(k) for k in ("step", "final_loss", "num_classes", "label_rate",
                                                   "world_size")})
    write_uri(model, run.model.url, iteration=iteration, framework="transformers/hubert")
    with open(loss_curve.path, "w") as f:
        try:
            f.write(png_html(f"Iteration {iteration}: training loss", run.read_bytes(run.PLOT)))
        except BadInput:
            f.write("<html><body>no loss curve (no logged steps)</body></html>")
    return run.model.url
