"""What a training job runs and on how much hardware, shared by both launchers.

:class:`JobSpec` is launcher-neutral; :func:`container_env` and :func:`node_resources` give the
training container's environment and per-node resources, which the TrainJob
(:mod:`mhubert.jobs.trainjob`) and the PyTorchJob (:mod:`mhubert.jobs.pytorchjob`) place where their
CRDs expect them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mhubert.errors import BadInput

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PVC_RE = re.compile(r"^([a-z0-9][-a-z0-9.]*):(/[^:]*)$")
DEFAULT_RUNTIME = "mhubert-torch"   # the namespaced TrainingRuntime of charts/mhubert-platform
RUNTIME_KINDS = ("TrainingRuntime", "ClusterTrainingRuntime")

# NCCL settings for pods on a Kubernetes network: errors abort the collective instead of hanging,
# and the pod's own interface carries the traffic (override with ``env``).
NCCL_ENV = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "NCCL_DEBUG": "WARN",
    "NCCL_SOCKET_IFNAME": "eth0",
}


@dataclasses.dataclass
class JobSpec:
    """One training run on the cluster.

    ``train_args`` are the arguments of ``python -m mhubert.train`` (``--preset``, ``--manifest``,
    ``--labels``, ``--out``, ...). Memory and CPU are Kubernetes quantities per node. ``runtime`` and
    ``runtime_kind`` name the TrainJob's runtime; ``max_restarts``, ``backoff_limit``,
    ``clean_pod_policy`` and ``ttl_seconds_after_finished`` are PyTorchJob run policy. ``pvcs`` maps
    PersistentVolumeClaim names to mount paths in the training container.
    """

    name: str
    image: str
    train_args: list[str] = dataclasses.field(default_factory=list)
    nodes: int = 1
    gpus_per_node: int = 1
    cpu: str = "8"
    memory: str = "64Gi"
    shm_size: str = "16Gi"
    s3_secret: str | None = "mhubert-s3"
    s3_access_key_key: str = "AWS_ACCESS_KEY_ID"
    s3_secret_key_key: str = "AWS_SECRET_ACCESS_KEY"
    s3_endpoint: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    runtime: str = DEFAULT_RUNTIME
    runtime_kind: str = "TrainingRuntime"
    max_restarts: int = 3
    backoff_limit: int = 3
    clean_pod_policy: str = "Running"
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    active_deadline_seconds: int | None = None
    service_account: str | None = None
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pvcs: dict[str, str] = dataclasses.field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise BadInput(f"job name {self.name!r} must be a DNS-1123 label (lowercase letters, digits, "
                           "'-', at most 63 characters)")
        if not self.image:
            raise BadInput("an image is required (--image, e.g. REGISTRY/mhubert-gpu:TAG)")
        if self.nodes < 1:
            raise BadInput(f"nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise BadInput(f"gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.max_restarts < 0:
            raise BadInput(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.clean_pod_policy not in ("None", "Running", "All"):
            raise BadInput(f"clean_pod_policy must be None, Running or All, got {self.clean_pod_policy!r}")
        if not _NAME_RE.match(self.runtime or ""):
            raise BadInput(f"runtime {self.runtime!r} must be the name of a (Cluster)TrainingRuntime")
        if self.runtime_kind not in RUNTIME_KINDS:
            raise BadInput(f"runtime_kind must be one of {', '.join(RUNTIME_KINDS)}, "
                           f"got {self.runtime_kind!r}")
        if self.active_deadline_seconds is not None and self.active_deadline_seconds < 1:
            raise BadInput(f"active_deadline_seconds must be >= 1, got {self.active_deadline_seconds}")
        for claim, path in self.pvcs.items():
            if not _PVC_RE.match(f"{claim}:{path}"):
                raise BadInput(f"volume {claim}:{path} must be CLAIM:/absolute/mount/path")

    @property
    def procs_per_node(self) -> int:
        """Processes per node: one per GPU, or one on a CPU-only node."""
        return max(1, self.gpus_per_node)


def parse_pvc(item: str) -> tuple[str, str]:
    """``CLAIM:/mount/path`` -> ``(claim, path)``."""
    m = _PVC_RE.match(item)
    if not m:
        raise BadInput(f"--pvc {item!r} must look like CLAIM:/absolute/mount/path")
    return m.group(1), m.group(2)


def parse_key_values(items: list[str], option: str) -> dict[str, str]:
    """``["K=V", ...]`` -> dict; a missing ``=`` is a :class:`BadInput` naming ``option``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{option} {item!r} must look like KEY=VALUE")
        out[key] = value
    return out


def container_env(spec: JobSpec) -> list[dict[str, Any]]:
    """The training container's environment: unbuffered output, NCCL settings on GPU nodes, the S3
    endpoint and the S3 credentials from their Secret (never as values), then ``spec.env``."""
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if spec.gpus_per_node > 0:
        env += [{"name": k, "value": v} for k, v in NCCL_ENV.items() if k not in spec.env]
    if spec.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": spec.s3_endpoint})
    if spec.s3_secret:
        for var, key in (("AWS_ACCESS_KEY_ID", spec.s3_access_key_key),
                         ("AWS_SECRET_ACCESS_KEY", spec.s3_secret_key_key)):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": spec.s3_secret, "key": key}}})
    env += [{"name": k, "value": str(v)} for k, v in sorted(spec.env.items())]
    return env


def node_resources(spec: JobSpec) -> dict[str, dict[str, Any]]:
    """Requests and limits of one node's training container (GPUs requested = limited)."""
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": spec.cpu, "memory": spec.memory},
        "limits": {"memory": spec.memory},
    }
    if spec.gpus_per_node > 0:
        resources["limits"]["nvidia.com/gpu"] = spec.gpus_per_node
        resources["requests"]["nvidia.com/gpu"] = spec.gpus_per_node
    return resources


def volumes(spec: JobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes and container mounts: a memory-backed /dev/shm (DataLoader workers share tensors
    through it, 64 MiB by default in a pod) and the PersistentVolumeClaims of ``spec.pvcs``."""
    vols: list[dict[str, Any]] = [{"name": "dshm",
                                   "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    for i, (claim, path) in enumerate(sorted(spec.pvcs.items())):
        vols.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"pvc-{i}", "mountPath": path})
    return vols, mounts


def metadata(spec: JobSpec, namespace: str | None) -> dict[str, Any]:
    """The job object's metadata (``namespace`` omitted when None: resolved at run time)."""
    meta: dict[str, Any] = {"name": spec.name,
                            "labels": {"app.kubernetes.io/part-of": "mhubert", **spec.labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def parse_toleration(item: str) -> dict[str, Any]:
    """A toleration in ``kubectl taint`` syntax: ``KEY[=VALUE]:EFFECT`` (EFFECT one of NoSchedule,
    PreferNoSchedule, NoExecute), e.g. ``nvidia.com/gpu:NoSchedule``."""
    effects = ("NoSchedule", "PreferNoSchedule", "NoExecute")
    taint, sep, effect = item.rpartition(":")
    if not sep or not taint or effect not in effects:
        raise BadInput(f"--toleration {item!r} must look like KEY[=VALUE]:EFFECT with EFFECT one of "
                       f"{', '.join(effects)}")
    key, eq, value = taint.partition("=")
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}
