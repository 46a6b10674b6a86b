"""Test helpers for the Kubernetes side (no tests here): the CRD schemas of ../shared/schemas, kmock's
Kubernetes emulator served on 127.0.0.1, a kubeconfig pointing at it, and a small controller that moves
a TrainJob or PyTorchJob through what Kubeflow Trainer / the Training Operator report."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.schemas import schema_file, schemas_dir  # noqa: F401 (re-exported for the kube tests)

ROOT = Path(__file__).resolve().parents[2]


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def crd_validator(name: str) -> Any:
    """A jsonschema validator of the (first) served version of CRD file ``name``."""
    import jsonschema

    crd = load_yaml(schema_file(name))
    return jsonschema.Draft7Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


RESOURCES = {
    "trainer.kubeflow.org/v1alpha1/trainjobs": {"kind": "TrainJob", "namespaced": True},
    "trainer.kubeflow.org/v1alpha1/trainingruntimes": {"kind": "TrainingRuntime", "namespaced": True},
    "kubeflow.org/v1/pytorchjobs": {"kind": "PyTorchJob", "namespaced": True},
}


class Emulator:
    """kmock's KubernetesEmulator served over HTTP from a background event loop; pod logs answer
    ``log_text`` (the emulator stores objects; logs are a reaction)."""

    def __init__(self, log_text: bytes = b"") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.log_text = log_text

    async def _enter(self) -> None:
        import kmock

        self.emulator = kmock.KubernetesEmulator()
        for res, info in RESOURCES.items():
            self.emulator.resources[res] = info
        self.emulator[kmock.subresource("log")] << self.log_text
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator)
        await self.server.__aenter__()

    async def _exit(self) -> None:
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def __enter__(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._enter(), self.loop).result(10)
        return f"http://{self.server.host}:{self.server.port}"

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._exit(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


NODE0_LOG = b"[rank0] step 1 loss 6.91\n[rank0] step 2 loss 6.85\n"


@pytest.fixture
def k8s():
    """``(CustomObjectsApi, Configuration)`` against a fresh emulator whose pod logs are NODE0_LOG."""
    pytest.importorskip("kmock")
    from kubernetes import client

    with Emulator(NODE0_LOG) as url:
        cfg = client.Configuration()
        cfg.host = url
        with client.ApiClient(cfg) as api_client:
            yield client.CustomObjectsApi(api_client), cfg


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": server}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u", "namespace": namespace}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return path


_STAMP = "2026-01-01T00:00:00Z"


class Controller:
    """Plays Kubeflow Trainer (TrainJob) or the Training Operator (PyTorchJob) one step per poll.

    Used as the job code's ``sleep`` (or through :class:`FakeTime`): each call applies the next step
    of ``script`` to the job named ``name``: ``created``, ``running`` (node 0's pod appears, Running),
    ``complete`` (``on_complete()`` first: what the training pods would have written), ``failed:REASON:
    MESSAGE``, or ``idle`` (nothing happens). Every status written is validated against the CRD's
    status schema, so the test speaks what the real controllers speak.
    """

    def __init__(self, api: Any, kind: str, namespace: str, name: str | None, script: list[str],
                 on_complete: Any = None, validator: Any = None) -> None:
        self.api, self.kind, self.ns, self.name = api, kind, namespace, name
        self.script, self.on_complete, self.validator = list(script), on_complete, validator
        self.conditions: list[dict[str, Any]] = []
        self.steps_done: list[str] = []
        self.created: dict[str, Any] | None = None     # the job as the launcher created it

    # where the kind lives
    @property
    def _res(self) -> tuple[str, str, str]:
        if self.kind == "TrainJob":
            return "trainer.kubeflow.org", "v1alpha1", "trainjobs"
        return "kubeflow.org", "v1", "pytorchjobs"

    def _job_name(self) -> str:
        if self.name:
            return self.name
        group, version, plural = self._res
        (obj,) = self.api.list_namespaced_custom_object(group, version, self.ns, plural)["items"]
        self.name = obj["metadata"]["name"]
        return self.name

    def _cond(self, ctype: str, reason: str, message: str) -> None:
        for c in self.conditions:
            if c["type"] in ("Created", "Running"):
                c["status"] = "False"
        self.conditions.append({"type": ctype, "status": "True", "reason": reason, "message": message,
                                "lastTransitionTime": _STAMP})

    def _pod(self) -> None:
        from kubernetes import client

        name = self._job_name()
        if self.kind == "TrainJob":
            labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": "node",
                      "batch.kubernetes.io/job-completion-index": "0"}
            pod, container = f"{name}-node-0-0-x7k2p", "node"
        else:
            labels = {"training.kubeflow.org/job-name": name, "training.kubeflow.org/replica-type": "master",
                      "training.kubeflow.org/replica-index": "0"}
            pod, container = f"{name}-master-0", "pytorch"
        client.CoreV1Api(self.api.api_client).create_namespaced_pod(self.ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": self.ns, "labels": labels, "creationTimestamp": _STAMP},
            "spec": {"containers": [{"name": container, "image": "img"}]},
            "status": {"phase": "Running"}})

    def _trainjob_status(self, step: str) -> dict[str, Any]:
        jobs = {"name": "node", "active": 1, "ready": 0, "succeeded": 0, "failed": 0, "suspended": 0}
        if step == "running":
            jobs["ready"] = 1
        elif step == "complete":
            jobs.update(active=0, succeeded=1)
            self._cond("Complete", "JobSetCompleted", "jobset completed")
        elif step.startswith("failed"):
            _, reason, message = step.split(":", 2)
            jobs.update(active=0, failed=1)
            self._cond("Failed", reason, message)
        status: dict[str, Any] = {"jobsStatus": [jobs]}
        if self.conditions:
            status["conditions"] = [dict(c) for c in self.conditions]
        return status

    def _pytorchjob_status(self, step: str) -> dict[str, Any]:
        if step == "created":
            self._cond("Created", "PyTorchJobCreated", f"PyTorchJob {self.name} is created.")
        elif step == "running":
            self._cond("Running", "PyTorchJobRunning", f"PyTorchJob {self.name} is running.")
        elif step == "complete":
            self._cond("Succeeded", "PyTorchJobSucceeded", f"PyTorchJob {self.name} successfully completed.")
        elif step.startswith("failed"):
            _, reason, message = step.split(":", 2)
            self._cond("Failed", reason, message)
        return {"conditions": [dict(c) for c in self.conditions]}

    def __call__(self, _seconds: float = 0.0) -> None:
        if not self.script:
            return
        step = self.script.pop(0)
        self.steps_done.append(step)
        if step == "idle":
            return
        name = self._job_name()
        group, version, plural = self._res
        if self.created is None:
            self.created = self.api.get_namespaced_custom_object(group, version, self.ns, plural, name)
            # what the API server adds on creation (kmock stores objects as sent)
            self.api.patch_namespaced_custom_object(group, version, self.ns, plural, name,
                                                    {"metadata": {"creationTimestamp": _STAMP}})
        if step == "running":
            self._pod()
        if step == "complete" and self.on_complete:
            self.on_complete()
        status = (self._trainjob_status if self.kind == "TrainJob" else self._pytorchjob_status)(step)
        obj = self.api.get_namespaced_custom_object(group, version, self.ns, plural, name)
        if self.validator is not None:
            self.validator.validate({**obj, "status": status})
        self.api.patch_namespaced_custom_object(group, version, self.ns, plural, name, {"status": status})


class FakeTime:
    """Stands in for the ``time`` module of :mod:`mhubert.jobs.kube`: ``sleep`` advances a fake clock
    and runs the controller; ``monotonic`` reads the fake clock."""

    def __init__(self, controller: Controller) -> None:
        self.now = 0.0
        self.controller = controller

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.controller(seconds)

    def monotonic(self) -> float:
        return self.now


def chart_runtime(namespace: str, values: dict | None = None) -> dict:
    """The TrainingRuntime charts/mhubert-platform renders (TrainJobs refer to it by name)."""
    helm = pytest.importorskip("helm_python")
    rendered = helm.Chart.load(str(ROOT / "charts" / "mhubert-platform")).render(
        values=values or {}, name="mh", namespace=namespace)
    return next(d for path, text in rendered.items() if not path.endswith(".txt")
                for d in yaml.safe_load_all(text) if d and d.get("kind") == "TrainingRuntime")
