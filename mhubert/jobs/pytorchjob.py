"""Run the trainer as a Kubeflow Training Operator ``PyTorchJob`` (``kubeflow.org/v1``), for clusters
that still run the v1 operator (its source left upstream in Trainer v2.0; see :mod:`.trainjob`).

:func:`render` builds the manifest (one Master plus ``nodes - 1`` Workers, each running
``torch.distributed.run -m mhubert.train`` with ``gpus_per_node`` processes, c10d rendezvous).
Creating, waiting (``Succeeded``/``Failed``), node-0 logs and deletion are :mod:`.kube`'s, spoken
with the kubernetes client (no ``kubeflow-training`` package: it and the ``kubeflow`` SDK both ship
``kubeflow/__init__.py``).
"""

from __future__ import annotations

from typing import Any

from mhubert.jobs import kube
from mhubert.jobs.spec import JobSpec, container_env, metadata, node_resources, volumes

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
TERMINAL = ("Succeeded", "Failed")
RDZV_PORT = 29400
CONTAINER = "pytorch"   # the Training Operator looks for this container name


def phase(obj: dict[str, Any]) -> str:
    """The operator's latest true condition (Created, Running, Restarting, Succeeded, Failed)."""
    cond = kube.latest_condition(obj)
    return cond["type"] if cond else "Pending"


PYTORCHJOB = kube.Kind(GROUP, VERSION, PLURAL, KIND, complete="Succeeded", phase=phase,
                       operator="the Kubeflow Training Operator v1 "
                                "(--launcher trainjob for Kubeflow Trainer v2)")


def _replica(spec: JobSpec, replicas: int) -> dict[str, Any]:
    vols, mounts = volumes(spec)
    container = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "torch.distributed.run",
                    "--nproc_per_node", str(spec.procs_per_node),
                    "-m", "mhubert.train", *spec.train_args],
        "env": container_env(spec),
        "resources": node_resources(spec),
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": vols}
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",
        "template": {
            "metadata": {"labels": dict(spec.labels),
                         "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": pod_spec,
        },
    }


def render(spec: JobSpec, namespace: str | None = None) -> dict[str, Any]:
    """The PyTorchJob manifest as a dict (``namespace`` omitted when None)."""
    spec.validate()
    replica_specs = {"Master": _replica(spec, 1)}
    if spec.nodes > 1:
        replica_specs["Worker"] = _replica(spec, spec.nodes - 1)
    run_policy: dict[str, Any] = {
        "cleanPodPolicy": spec.clean_pod_policy,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "backoffLimit": spec.backoff_limit,
    }
    if spec.active_deadline_seconds:
        run_policy["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata(spec, namespace),
        "spec": {
            "nprocPerNode": str(spec.procs_per_node),
            # The operator's default rendezvous host is Worker-0, which a one-node job lacks: point
            # c10d at the Master pod (headless service DNS), which then hosts the store.
            "elasticPolicy": {
                "rdzvBackend": "c10d",
                "rdzvHost": f"{spec.name}-master-0",
                "rdzvPort": RDZV_PORT,
                "rdzvId": spec.name,
                "minReplicas": spec.nodes,
                "maxReplicas": spec.nodes,
                "maxRestarts": spec.max_restarts,
            },
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }


def node0_logs(name: str) -> Any:
    """The node-0 log reader of job ``name`` for :func:`mhubert.jobs.kube.run`: the Master pod."""
    labels = {"training.kubeflow.org/job-name": name, "training.kubeflow.org/replica-type": "master",
              "training.kubeflow.org/replica-index": "0"}
    return lambda namespace, api: kube.pod_log_lines(namespace, api, labels, CONTAINER)
