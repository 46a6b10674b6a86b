"""Run the trainer as a Kubeflow Training Operator ``PyTorchJob`` (kubeflow.org/v1).

:func:`render` builds the manifest (one Master plus ``nodes - 1`` Workers, each running
``torch.distributed.run -m mhubert.train`` with ``gpus_per_node`` processes, c10d rendezvous),
:func:`submit` creates it with the kubernetes client, and :func:`wait` polls its
``status.conditions`` until ``Succeeded`` or ``Failed`` and raises :class:`JobFailed` with the
operator's reason and message. The namespace is resolved when the code runs (inside the pipeline
pod), never when a pipeline is compiled: see :func:`current_namespace`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from mhubert.errors import BadInput, MhubertError

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
NAMESPACE_ENV = ("MHUBERT_NAMESPACE", "POD_NAMESPACE")
TERMINAL = ("Succeeded", "Failed")
RDZV_PORT = 29400
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# NCCL settings for pods on a Kubernetes network: errors abort the collective instead of hanging,
# and the pod's own interface carries the traffic (override with ``env``).
NCCL_ENV = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "NCCL_DEBUG": "WARN",
    "NCCL_SOCKET_IFNAME": "eth0",
}


class JobFailed(MhubertError):
    """The PyTorchJob ended in ``Failed``; the message carries the operator's reason and message."""


class JobTimeout(MhubertError):
    """The PyTorchJob did not finish within the timeout."""


@dataclasses.dataclass
class JobSpec:
    """What to run and on how much hardware.

    ``train_args`` are the arguments of ``python -m mhubert.train`` (``--preset``, ``--manifest``,
    ``--labels``, ``--out``, ...). Memory and CPU are Kubernetes quantities per node.
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
    max_restarts: int = 3
    backoff_limit: int = 3
    clean_pod_policy: str = "Running"
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    active_deadline_seconds: int | None = None
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise BadInput(f"job name {self.name!r} must be a DNS-1123 label (lowercase letters, digits, "
                           "'-', at most 63 characters)")
        if not self.image:
            raise BadInput("an image is required")
        if self.nodes < 1:
            raise BadInput(f"nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise BadInput(f"gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.max_restarts < 0:
            raise BadInput(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.clean_pod_policy not in ("None", "Running", "All"):
            raise BadInput(f"clean_pod_policy must be None, Running or All, got {self.clean_pod_policy!r}")

    @property
    def procs_per_node(self) -> int:
        """Processes per node: one per GPU, or one on a CPU-only node."""
        return max(1, self.gpus_per_node)


def _container(spec: JobSpec) -> dict[str, Any]:
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
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": spec.cpu, "memory": spec.memory},
        "limits": {"memory": spec.memory},
    }
    if spec.gpus_per_node > 0:
        resources["limits"]["nvidia.com/gpu"] = spec.gpus_per_node
        resources["requests"]["nvidia.com/gpu"] = spec.gpus_per_node
    return {
        "name": "pytorch",  # the Training Operator looks for this container name
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "torch.distributed.run",
                    "--nproc_per_node", str(spec.procs_per_node),
                    "-m", "mhubert.train", *spec.train_args],
        "env": env,
        "resources": resources,
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }


def _replica(spec: JobSpec, replicas: int) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec)],
        # DataLoader workers share tensors through /dev/shm, which is 64 MiB by default in a pod.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}],
    }
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
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
    metadata: dict[str, Any] = {"name": spec.name,
                                "labels": {"app.kubernetes.io/part-of": "mhubert", **spec.labels}}
    if namespace:
        metadata["namespace"] = namespace
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
        "metadata": metadata,
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


def to_yaml(manifest: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False)


def current_namespace(sa_file: str = SA_NAMESPACE_FILE) -> str:
    """The namespace to create jobs in, resolved at run time.

    The pod's service-account namespace file, else ``$MHUBERT_NAMESPACE`` / ``$POD_NAMESPACE``,
    else ``"default"``.
    """
    try:
        with open(sa_file) as f:
            ns = f.read().strip()
        if ns:
            return ns
    except OSError:
        pass
    for var in NAMESPACE_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return "default"


def custom_objects_api(api_client: Any = None) -> Any:
    """A ``CustomObjectsApi``; without a client, in-cluster config, else ~/.kube/config."""
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                # the client reads $KUBECONFIG once at import; honour it as it is now
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
            except (config.ConfigException, FileNotFoundError) as e:
                raise MhubertError(f"no Kubernetes configuration found (in-cluster or kubeconfig): {e}") \
                    from e
    return client.CustomObjectsApi(api_client)


def _api_error(e: Exception, what: str) -> MhubertError:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None) or ""
    body = getattr(e, "body", None) or ""
    return MhubertError(f"{what}: HTTP {status} {reason} {body}".strip())


def submit(manifest: dict[str, Any], namespace: str | None = None, api: Any = None,
           exist_ok: bool = True) -> dict[str, Any]:
    """Create the PyTorchJob; returns the created object. An existing job of the same name is
    returned as is when ``exist_ok`` (a retried pipeline task then waits on the same job)."""
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    ns = namespace or manifest.get("metadata", {}).get("namespace") or current_namespace()
    name = manifest["metadata"]["name"]
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": ns}}
    try:
        obj = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        log.info("created PyTorchJob %s/%s", ns, name)
        return obj
    except ApiException as e:
        if e.status == 409 and exist_ok:
            log.info("PyTorchJob %s/%s already exists; waiting on it", ns, name)
            return get(name, ns, api)
        raise _api_error(e, f"creating PyTorchJob {ns}/{name}") from e


def get(name: str, namespace: str, api: Any = None) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        raise _api_error(e, f"reading PyTorchJob {namespace}/{name}") from e


def delete(name: str, namespace: str, api: Any = None) -> None:
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status != 404:
            raise _api_error(e, f"deleting PyTorchJob {namespace}/{name}") from e


def latest_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The newest condition whose status is "True" (the operator appends in order)."""
    conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    return conds[-1] if conds else None


def wait(name: str, namespace: str, api: Any = None, timeout_s: float = 7 * 24 * 3600,
         poll_s: float = 15.0, on_status: Callable[[str, dict[str, Any]], None] | None = None,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Poll until the job is Succeeded (returns the object) or Failed (raises :class:`JobFailed`).

    ``on_status(condition_type, obj)`` is called on every change of the latest condition.
    Raises :class:`JobTimeout` after ``timeout_s`` seconds.
    """
    api = api or custom_objects_api()
    deadline = clock() + timeout_s
    seen: str | None = None
    while True:
        obj = get(name, namespace, api)
        cond = latest_condition(obj)
        ctype = cond.get("type") if cond else "Pending"
        if ctype != seen:
            seen = ctype
            msg = (cond or {}).get("message", "")
            log.info("PyTorchJob %s/%s: %s %s", namespace, name, ctype, msg)
            if on_status:
                on_status(ctype, obj)
        if ctype == "Succeeded":
            return obj
        if ctype == "Failed":
            raise JobFailed(f"PyTorchJob {namespace}/{name} failed: {cond.get('reason', 'unknown reason')}: "
                            f"{cond.get('message', '')}".rstrip(": "))
        if clock() >= deadline:
            raise JobTimeout(f"PyTorchJob {namespace}/{name} did not finish within {timeout_s:g} s "
                             f"(last condition: {ctype})")
        sleep(poll_s)


def run(spec: JobSpec, namespace: str | None = None, api: Any = None, timeout_s: float = 7 * 24 * 3600,
        poll_s: float = 15.0, delete_on_timeout: bool = False, **wait_kwargs: Any) -> dict[str, Any]:
    """Render, submit and wait; the namespace defaults to :func:`current_namespace` (run time)."""
    api = api or custom_objects_api()
    ns = namespace or current_namespace()
    submit(render(spec, ns), ns, api)
    try:
        return wait(spec.name, ns, api, timeout_s=timeout_s, poll_s=poll_s, **wait_kwargs)
    except JobTimeout:
        if delete_on_timeout:
            delete(spec.name, ns, api)
        raise
