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
          timeout_hours: float = 168.0, run_id: str = "", delete_policy: str = "on-success") -> str:
    """Train into ``<output_root>/iter<N>/train`` with ``python -m mhubert.train`` and return the
    URL of the transformers model it writes (``.../train/model``).

    ``init_from`` (a transformers model URL) starts the encoder from that model. The preset's
    per-iteration ``train`` overrides apply before ``overrides``.

    ``launcher="local"`` runs ``torch.distributed.run --nproc_per_node max(1, gpus_per_node)`` here;
    ``"trainjob"`` (Kubeflow Trainer v2) or ``"pytorchjob"`` (v1 Training Operator) creates a job of
    ``nodes`` x ``gpus_per_node`` with ``image`` in the namespace of this pod, streams node 0's log here
    and waits for it, failing with the job's reason; ``delete_policy`` (on-success, always, never)
    says when the job goes. A finished run (``_SUCCESS``) is not launched again; an interrupted one
    resumes from its last checkpoint.
    """
    import subprocess
    import sys

    from components._common import log_metrics, png_html
    from mhubert import storage

    if launcher not in ("local", "trainjob", "pytorchjob"):
        raise ValueError(f"launcher must be local, trainjob or pytorchjob, got {launcher!r}")
    from mhubert.config import iteration_train_overrides

    out = storage.join(output_root, f"iter{iteration}", "train")
    args = ["--preset", preset, "--manifest", manifest_uri, "--labels", labels_uri, "--out", out]
    if init_from:
        args += ["--init-from", init_from]
    for o in iteration_train_overrides(preset, iteration, list(overrides)):
        args += ["--set", o]
    if not storage.is_committed(out):
        if launcher == "local":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc_per_node", str(max(1, gpus_per_node)), "-m", "mhubert.train", *args]
            print("+", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                raise RuntimeError(f"training iteration {iteration} failed (torchrun exit {rc}); "
                                   "see the log above")
        else:
            from mhubert.jobs.launch import train_on_cluster

            train_on_cluster(launcher, args, out=out, iteration=iteration, image=image, nodes=nodes,
                             gpus_per_node=gpus_per_node, s3_secret=s3_secret,
                             timeout_s=timeout_hours * 3600, run_id=run_id, delete_policy=delete_policy)
    info = storage.read_json(storage.join(out, storage.SUCCESS))
    log_metrics(metrics, {k: info.get(k) for k in ("step", "final_loss", "num_classes", "label_rate",
                                                   "world_size")})
    model_url = storage.join(out, "model")
    model.metadata.update({"uri": model_url, "iteration": iteration, "framework": "transformers/hubert"})
    with open(model.path, "w") as f:
        f.write(model_url + "\n")
    loss_png = storage.join(out, "loss.png")
    with open(loss_curve.path, "w") as f:
        if storage.exists(loss_png):
            f.write(png_html(f"Iteration {iteration}: training loss", storage.read_bytes(loss_png)))
        else:
            f.write("<html><body>no loss curve (no logged steps)</body></html>")
    return model_url
