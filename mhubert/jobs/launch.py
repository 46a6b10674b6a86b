"""One entry point for a training run on the cluster, whichever launcher: :func:`render` and
:func:`run_training` pick :mod:`.trainjob` (Kubeflow Trainer v2, the default) or :mod:`.pytorchjob`
(the v1 Training Operator, for older clusters)."""

from __future__ import annotations

import hashlib
import os
import types
from collections.abc import Callable
from typing import Any

from mhubert.errors import BadInput
from mhubert.jobs import kube, pytorchjob, trainjob
from mhubert.jobs.spec import JobSpec

LAUNCHERS: dict[str, types.ModuleType] = {"trainjob": trainjob, "pytorchjob": pytorchjob}
KINDS: dict[str, kube.Kind] = {"trainjob": trainjob.TRAINJOB, "pytorchjob": pytorchjob.PYTORCHJOB}
DEFAULT_LAUNCHER = "trainjob"


def launcher_module(launcher: str) -> types.ModuleType:
    if launcher not in LAUNCHERS:
        raise BadInput(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    return LAUNCHERS[launcher]


def render(launcher: str, spec: JobSpec, namespace: str | None = None) -> dict[str, Any]:
    """The job manifest of ``spec`` for ``launcher`` (``trainjob`` or ``pytorchjob``)."""
    return launcher_module(launcher).render(spec, namespace)


def run_training(launcher: str, spec: JobSpec, namespace: str | None = None, api: Any = None,
                 timeout_s: float = kube.WEEK_S, poll_s: float = 15.0, delete_policy: str = "on-success",
                 sink: Callable[[str], None] = print, **wait_kwargs: Any) -> dict[str, Any]:
    """Create the job in ``namespace`` (default: this pod's, at run time), copy node 0's log into
    ``sink``, wait for success and delete by ``delete_policy``; raises :class:`kube.JobFailed` with the
    controller's reason and message, or :class:`kube.JobTimeout`."""
    mod = launcher_module(launcher)
    ns = namespace or kube.current_namespace()
    return kube.run(KINDS[launcher], mod.render(spec, ns), ns, api, timeout_s=timeout_s, poll_s=poll_s,
                    delete_policy=delete_policy, logs=mod.node0_logs(spec.name), sink=sink, **wait_kwargs)


def train_on_cluster(launcher: str, train_args: list[str], out: str, iteration: int, image: str,
                     nodes: int = 1, gpus_per_node: int = 1, s3_secret: str = "mhubert-s3",
                     timeout_s: float = kube.WEEK_S, run_id: str = "", delete_policy: str = "on-success",
                     poll_s: float = 30.0, **spec_kwargs: Any) -> dict[str, Any]:
    """The pipeline's train step on the cluster: one job per (run, output URL), named so that a retried
    task finds and waits on the job it created before; S3 endpoint from this pod's ``AWS_ENDPOINT_URL``.
    The job's ``activeDeadlineSeconds`` is the wait's timeout, so a job nobody waits for any more is
    stopped by the cluster instead of holding its GPUs."""
    if not image:
        raise BadInput(f"launcher={launcher} needs the training image (the pipeline's gpu_image)")
    digest = hashlib.sha256(f"{run_id}|{out}".encode()).hexdigest()[:10]
    spec = JobSpec(name=f"mhubert-it{iteration}-{digest}", image=image, train_args=list(train_args),
                   nodes=nodes, gpus_per_node=gpus_per_node, s3_secret=s3_secret or None,
                   s3_endpoint=os.environ.get("AWS_ENDPOINT_URL") or None,
                   labels={"mhubert/iteration": str(iteration)},
                   active_deadline_seconds=max(1, int(timeout_s)), **spec_kwargs)
    return run_training(launcher, spec, timeout_s=timeout_s, poll_s=poll_s, delete_policy=delete_policy,
                        sink=lambda line: print(line, flush=True))


def to_yaml(manifest: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False)
