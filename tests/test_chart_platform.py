"""charts/mhubert-platform rendered offline with helm-python-sdk (Helm v4): built-in kinds checked by
kubernetes-validate --strict, the PodMonitor against its CRD, the TrainingRuntime against the upstream
torch runtime and (its Job templates) as batch/v1 Jobs; RBAC kept namespace-scoped; names agreeing
with the pipeline and the job launchers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.kube import crd_validator, load_yaml, schema_file

helm = pytest.importorskip("helm_python")
kv = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[1] / "charts" / "mhubert-platform"
K8S_VERSION = "1.30.0"
CUSTOM_KINDS = {"TrainingRuntime", "PodMonitor"}


def _render(values=None, namespace="team-a"):
    rendered = helm.Chart.load(str(CHART)).render(values=values or {}, name="mh", namespace=namespace)
    objs = []
    for path, text in rendered.items():
        if path.endswith(".txt"):
            continue
        objs += [d for d in yaml.safe_load_all(text) if d]
    return objs


def _by_kind(objs):
    out: dict[str, list[dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


@pytest.mark.parametrize("values", [
    {},
    {"s3": {"createSecret": True, "accessKeyId": "AKIA", "secretAccessKey": "s3cr3t",
            "endpoint": "http://minio.kubeflow:9000", "existingSecret": "mhubert-s3"},
     "rbac": {"create": True, "extraServiceAccounts": ["pipeline-runner"]}},
])
def test_renders_valid_objects(values):
    objs = _render(values)
    kinds = _by_kind(objs)
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "TrainingRuntime", "PodMonitor"} \
        <= set(kinds)
    for o in objs:
        if o["kind"] not in CUSTOM_KINDS:
            kv.validate(o, K8S_VERSION, strict=True)
        assert o["metadata"]["namespace"] == "team-a"
    # strict validation is not a no-op: an unknown field is rejected
    bad = {**kinds["Role"][0], "rulez": []}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


def test_rbac_is_namespaced_and_minimal():
    kinds = _by_kind(_render({"rbac": {"create": True, "extraServiceAccounts": ["pipeline-runner"]}}))
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds)
    (role,) = kinds["Role"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("trainer.kubeflow.org",), ("trainjobs",)): {"create", "get", "list", "watch", "delete", "patch"},
        (("trainer.kubeflow.org",), ("trainjobs/status",)): {"get"},
        (("trainer.kubeflow.org",), ("trainingruntimes",)): {"get", "list", "watch"},
        (("kubeflow.org",), ("pytorchjobs",)): {"create", "get", "list", "watch", "delete", "patch"},
        (("",), ("pods", "pods/log")): {"get", "list", "watch"},
    }
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])
    (binding,) = kinds["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    names = {s["name"] for s in binding["subjects"]}
    assert names == {kinds["ServiceAccount"][0]["metadata"]["name"], "pipeline-runner"}


def test_names_agree_with_pipeline_and_jobs():
    from mhubert.jobs.spec import JobSpec
    from pipelines.mhubert_pipeline import DEFAULTS_CONFIGMAP, S3_ENDPOINT_KEY, S3_SECRET_KEYS

    kinds = _by_kind(_render({"s3": {"createSecret": True, "accessKeyId": "a", "secretAccessKey": "b",
                                     "existingSecret": "mhubert-s3", "endpoint": "http://minio:9000"}}))
    (cm,) = kinds["ConfigMap"]
    assert cm["metadata"]["name"] == DEFAULTS_CONFIGMAP
    assert set(S3_ENDPOINT_KEY) <= set(cm["data"]) and cm["data"]["s3_endpoint"] == "http://minio:9000"
    (secret,) = kinds["Secret"]
    spec = JobSpec(name="x", image="y")
    assert secret["metadata"]["name"] == spec.s3_secret == cm["data"]["s3_secret"]
    job_keys = {spec.s3_access_key_key, spec.s3_secret_key_key}
    assert set(secret["stringData"]) == set(S3_SECRET_KEYS) == job_keys


def test_defaults_create_no_secret_and_omit_empty_endpoint():
    kinds = _by_kind(_render())
    assert "Secret" not in kinds
    assert "s3_endpoint" not in kinds["ConfigMap"][0]["data"]  # optional env: AWS default endpoint


@pytest.mark.parametrize("values,word", [
    ({"defaults": {"preset": "huge", "configMapName": "mhubert-defaults", "outputRoot": "s3://b/r"}},
     "preset"),
    ({"serviceAccount": {"create": True, "name": "Bad_Name"}}, "name"),
    ({"unknown": 1}, "unknown"),
    ({"s3": {"createSecret": True, "existingSecret": "mhubert-s3"}}, "accessKeyId"),
    ({"trainingRuntime": {"create": True, "name": "mhubert-torch", "numNodes": 1, "metricsPort": 80,
                          "tmpSizeLimit": "8Gi"}}, "metricsPort"),
    ({"metrics": {"podMonitor": {"enabled": True, "interval": "soon"}}}, "interval"),
])
def test_bad_values_rejected(values, word):
    with pytest.raises(helm.HelmError, match=word):
        _render(values)


def test_lint_clean():
    report = helm.lint(str(CHART), strict=True)
    assert not report["errors"]
    assert not [m for m in report["messages"] if m["severity"] >= 2]


# ---------------------------------------------------------------- the TrainingRuntime and its PodMonitor

def _runtime_pod(runtime: dict) -> dict:
    (rj,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    return rj["template"]["spec"]["template"]


def test_training_runtime_follows_the_upstream_torch_runtime():
    """Same shape as Kubeflow Trainer's own torch-distributed runtime (names the torch plugin and the
    SDK rely on), the project's GPU image, and Job templates that are valid batch/v1 Jobs."""
    upstream = load_yaml(schema_file("clustertrainingruntime_torch-distributed.yaml"))
    (rt,) = _by_kind(_render({"images": {"cpu": "reg/cpu:1", "gpu": "reg/gpu:2"}}))["TrainingRuntime"]
    from mhubert.jobs.spec import DEFAULT_RUNTIME

    assert rt["apiVersion"] == upstream["apiVersion"] and rt["metadata"]["name"] == DEFAULT_RUNTIME
    assert rt["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"   # the SDK requires it
    assert set(rt["spec"]["mlPolicy"]) == set(upstream["spec"]["mlPolicy"]) == {"numNodes", "torch"}
    (up_rj,) = upstream["spec"]["template"]["spec"]["replicatedJobs"]
    (rj,) = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == up_rj["name"] == "node"
    assert rj["template"]["metadata"]["labels"] == up_rj["template"]["metadata"]["labels"]
    (container,) = _runtime_pod(rt)["spec"]["containers"]
    (up_container,) = _runtime_pod(upstream)["spec"]["containers"]
    assert container["name"] == up_container["name"]
    assert container["image"] == "reg/gpu:2"
    for r in rt["spec"]["template"]["spec"]["replicatedJobs"]:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": r["name"]}, **r["template"]}
        kv.validate(job, K8S_VERSION, strict=True)
    with pytest.raises(kv.ValidationError):       # strict: an unknown pod field is caught there too
        bad = yaml.safe_load(yaml.safe_dump(rj))
        bad["template"]["spec"]["template"]["spec"]["containerz"] = []
        kv.validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, **bad["template"]},
                    K8S_VERSION, strict=True)


def test_podmonitor_matches_the_runtime_pods():
    import jsonschema

    kinds = _by_kind(_render({"metrics": {"podMonitor": {"enabled": True, "interval": "15s",
                                                         "labels": {"release": "prom"}}}}))
    (pm,) = kinds["PodMonitor"]
    validator = crd_validator("monitoring.coreos.com_podmonitors.yaml")
    validator.validate(pm)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**pm, "spec": {**pm["spec"], "podMetricsEndpoints": "metrics"}})
    assert pm["metadata"]["labels"]["release"] == "prom"
    pod = _runtime_pod(kinds["TrainingRuntime"][0])
    selector = pm["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod["metadata"]["labels"].items()
    ports = {p["name"]: p for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    endpoints = pm["spec"]["podMetricsEndpoints"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MHUBERT_METRICS_PORT"] == "9400"
    # local rank r serves on MHUBERT_METRICS_PORT + r (mhubert.train.telemetry): every one of the
    # node's ranks is declared and scraped, rank 0 included
    assert [ports[e["port"]]["containerPort"] for e in endpoints] == [9400 + r for r in range(8)]
    assert all(e["interval"] == "15s" and e["path"] == "/metrics" for e in endpoints)
    four = _by_kind(_render({"trainingRuntime": {"metricsPortsPerNode": 4}}))
    assert len(four["PodMonitor"][0]["spec"]["podMetricsEndpoints"]) == 4
    assert len(_runtime_pod(four["TrainingRuntime"][0])["spec"]["containers"][0]["ports"]) == 4


def test_runtime_and_podmonitor_are_optional():
    assert "PodMonitor" not in _by_kind(_render({"metrics": {"podMonitor": {"enabled": False,
                                                                          "interval": "30s"}}}))
    kinds = _by_kind(_render({"trainingRuntime": {"create": False, "name": "mhubert-torch", "numNodes": 1,
                                                  "metricsPort": 9400, "tmpSizeLimit": "8Gi"}}))
    assert not {"TrainingRuntime", "PodMonitor"} & set(kinds)


def test_training_runtime_round_trips_through_the_trainer_api_models():
    """kubeflow-trainer-api's models (generated from Trainer's OpenAPI; the SDK reads runtimes with
    them) parse the runtime with the right types and drop nothing: no field is unknown to Trainer."""
    models = pytest.importorskip("kubeflow_trainer_api.models")
    (rt,) = _by_kind(_render())["TrainingRuntime"]
    assert models.TrainerV1alpha1TrainingRuntime.from_dict(rt).to_dict() == rt
    misspelt = {**rt, "spec": {**rt["spec"], "mlPolicyz": {}}}        # dropped, so the check sees it
    assert models.TrainerV1alpha1TrainingRuntime.from_dict(misspelt).to_dict() != misspelt
