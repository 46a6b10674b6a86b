"""Run the trainer as a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``, v2.2).

:func:`render` builds the manifest: ``runtimeRef`` (by default the namespaced ``TrainingRuntime``
``mhubert-torch`` that charts/mhubert-platform installs, so nothing cluster-wide is needed; or e.g. the
``torch-distributed`` ``ClusterTrainingRuntime``), ``trainer`` (image, a bare ``torchrun`` command: the
torch plugin hands every node ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``,
``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``, which torchrun reads), ``runtimePatches`` for the pod
(service account, volumes, node selector, tolerations) and ``activeDeadlineSeconds``.

The manifest is built here and created with the kubernetes client (:mod:`.kube`), not with
``TrainerClient.train``, which builds its own trainer from a Python function or a built-in recipe.
The ``kubeflow`` SDK's ``TrainerClient`` is used where it fits: reading node 0's log (it knows how the
JobSet names the node pods and their container).
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any

from mhubert.errors import BadInput
from mhubert.jobs import kube
from mhubert.jobs.spec import JobSpec, container_env, metadata, node_resources, volumes

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
NODE = "node"                       # the torch runtime's replicated job and container name
PATCH_MANAGER = "mhubert.io/launcher"
COMMAND = ["torchrun", "-m", "mhubert.train"]
# The TrainJob CRD's own rule (x-kubernetes-validations): an RFC 1035 label, stricter than DNS-1123.
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def phase(obj: dict[str, Any]) -> str:
    """``Failed``, ``Complete`` or ``Suspended`` from the conditions; before those, ``Running`` once a
    child job reports ready pods, ``Created`` once the controller reports child jobs, else ``Pending``."""
    for ctype in ("Failed", "Complete", "Suspended"):
        if kube.condition(obj, ctype):
            return ctype
    jobs = (obj.get("status") or {}).get("jobsStatus") or []
    if any(j.get("ready", 0) > 0 for j in jobs):
        return "Running"
    # Trainer before v2.1 also reported a "Created" condition
    return "Created" if jobs or kube.condition(obj, "Created") else "Pending"


TRAINJOB = kube.Kind(GROUP, VERSION, PLURAL, KIND, complete="Complete", phase=phase,
                     operator="Kubeflow Trainer v2 (--launcher pytorchjob for the v1 Training Operator)")


def _runtime_patch(spec: JobSpec) -> dict[str, Any]:
    vols, mounts = volumes(spec)
    pod_spec: dict[str, Any] = {"volumes": vols, "containers": [{"name": NODE, "volumeMounts": mounts}]}
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    pod_meta: dict[str, Any] = {"annotations": {"sidecar.istio.io/inject": "false"}}
    if spec.labels:
        pod_meta["labels"] = dict(spec.labels)
    pod_template = {"metadata": pod_meta, "spec": pod_spec}
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": NODE, "template": {"spec": {"template": pod_template}}}]}}}}


def render(spec: JobSpec, namespace: str | None = None) -> dict[str, Any]:
    """The TrainJob manifest as a dict (``namespace`` omitted when None)."""
    spec.validate()
    if not NAME_RE.match(spec.name):
        raise BadInput(f"TrainJob name {spec.name!r} must start with a letter (an RFC 1035 label: lowercase "
                       "letters, digits and '-')")
    job_spec: dict[str, Any] = {
        "runtimeRef": {"name": spec.runtime, "apiGroup": GROUP, "kind": spec.runtime_kind},
        "trainer": {
            "image": spec.image,
            "command": list(COMMAND),
            "args": list(spec.train_args),
            "env": container_env(spec),
            "numNodes": spec.nodes,
            "numProcPerNode": spec.procs_per_node,
            "resourcesPerNode": node_resources(spec),
        },
        "runtimePatches": [_runtime_patch(spec)],
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata(spec, namespace),
            "spec": job_spec}


def node0_logs(name: str) -> Any:
    """The node-0 log reader of TrainJob ``name`` for :func:`mhubert.jobs.kube.run`.

    ``TrainerClient.get_job_logs`` first; where the SDK cannot read the job (it also reads the runtime,
    which a namespaced Role cannot for a ClusterTrainingRuntime), the pod the JobSet labels node 0.
    """
    labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": NODE,
              "batch.kubernetes.io/job-completion-index": "0"}
    clients: dict[str, Any] = {}

    def read(namespace: str, api: Any) -> Any:
        try:
            if "tc" not in clients:
                # the SDK (pydantic models of every Trainer type) stays out of the CLI's import path
                from kubeflow.common.types import KubernetesBackendConfig
                from kubeflow.trainer import TrainerClient

                cfg = KubernetesBackendConfig(namespace=namespace,
                                              client_configuration=api.api_client.configuration)
                clients["tc"] = TrainerClient(backend_config=cfg)
            lines = iter(clients["tc"].get_job_logs(name, follow=True, step=f"{NODE}-0"))
            first = next(lines, None)
            return None if first is None else itertools.chain([first], lines)
        except Exception as e:  # noqa: BLE001 (fall back to the pod's labels, see the docstring)
            log.info("TrainerClient could not read %s's logs (%s); reading the node-0 pod directly", name, e)
            return kube.pod_log_lines(namespace, api, labels, NODE)

    return read
