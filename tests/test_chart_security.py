"""Every pod spec the charts render (the API Deployment, the TrainingRuntime's pod templates) runs as
non-root with a read-only root filesystem, no privilege escalation and every capability dropped,
under the chart defaults and with every optional part switched on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python")

CHARTS = Path(__file__).resolve().parents[1] / "charts"
VALUES = {
    "mhubert-platform": [{}, {"trainingRuntime": {"create": True, "name": "rt", "numNodes": 2,
                                                  "metricsPort": 9400, "tmpSizeLimit": "1Gi"}}],
    "mhubert-api": [{}, {"gpu": {"enabled": True, "count": 1}, "autoscaling": {"enabled": True},
                         "auth": {"existingSecret": "keys"}},
                    {"kind": "InferenceService"}],
}


def _objects(chart: str, values: dict) -> list[dict]:
    with helm.Chart.load(str(CHARTS / chart)) as c:
        rendered = c.render(values=values, name="r", namespace="ns")
    return [d for path, text in rendered.items() if not path.endswith(".txt")
            for d in yaml.safe_load_all(text) if d]


def pod_specs(obj: dict, where: str = "") -> list[tuple[str, dict]]:
    """Every pod spec inside ``obj``: any mapping with ``containers`` under a ``template``'s ``spec``
    (Deployment, Job, JobSet and TrainingRuntime nest them at different depths)."""
    found: list[tuple[str, dict]] = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((path, node))
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(obj.get("spec", {}), f"{obj['kind']}/{obj['metadata']['name']}{where}")
    return found


def violations(where: str, spec: dict) -> list[str]:
    """What a pod spec lacks: non-root, a read-only root (with /tmp a volume), no privilege
    escalation, no capabilities."""
    out = []
    pod_sc = spec.get("securityContext") or {}
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        out.append(f"{where}: shares a host namespace")
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        name = f"{where} container {c['name']}"
        checks = {
            "runAsNonRoot": sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True,
            "a non-zero runAsUser": (sc.get("runAsUser", pod_sc.get("runAsUser")) or 0) != 0,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation: false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities.drop [ALL]": "ALL" in caps.get("drop", []) and not caps.get("add"),
            "not privileged": not sc.get("privileged"),
            # a read-only root needs somewhere to write
            "/tmp as a volume": "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])},
        }
        out += [f"{name}: lacks {what}" for what, ok in checks.items() if not ok]
    return out


@pytest.mark.parametrize("chart,values", [(c, v) for c, vs in VALUES.items() for v in vs])
def test_every_pod_is_locked_down(chart, values):
    objs = _objects(chart, values)
    specs = [s for o in objs for s in pod_specs(o)]
    kinds = {o["kind"] for o in objs}
    assert specs, f"{chart} renders no pod spec"
    assert ("TrainingRuntime" if chart == "mhubert-platform" else values.get("kind", "Deployment")) in kinds
    problems = [v for where, spec in specs for v in violations(where, spec)]
    assert not problems, "\n".join(problems)


def test_the_walk_finds_a_bad_pod():
    """The check can fail: a root container with a writable root, nested as in a JobSet, is caught."""
    obj = {"kind": "TrainingRuntime", "metadata": {"name": "x"}, "spec": {"template": {"spec": {
        "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "i",
             "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}}
        ]}}}}}]}}}}
    ((where, spec),) = pod_specs(obj)
    assert where == "TrainingRuntime/x.template.spec.replicatedJobs[0].template.spec.template.spec"
    found = "\n".join(violations(where, spec))
    for what in ("runAsNonRoot", "runAsUser", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
                 "capabilities", "/tmp"):
        assert what in found
