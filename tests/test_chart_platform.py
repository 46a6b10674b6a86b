"""charts/mhubert-platform rendered offline with helm-python-sdk (Helm v4), every object checked by
kubernetes-validate --strict, RBAC kept namespace-scoped, and its names agreeing with the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kv = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[1] / "charts" / "mhubert-platform"
K8S_VERSION = "1.30.0"


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
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= set(kinds)
    for o in objs:
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
        (("kubeflow.org",), ("pytorchjobs",)): {"create", "get", "list", "watch", "delete", "patch"},
        (("",), ("pods", "pods/log")): {"get", "list", "watch"},
    }
    (binding,) = kinds["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    names = {s["name"] for s in binding["subjects"]}
    assert names == {kinds["ServiceAccount"][0]["metadata"]["name"], "pipeline-runner"}


def test_names_agree_with_pipeline_and_jobs():
    from mhubert.jobs.pytorchjob import JobSpec
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
])
def test_bad_values_rejected(values, word):
    with pytest.raises(helm.HelmError, match=word):
        _render(values)


def test_lint_clean():
    report = helm.lint(str(CHART), strict=True)
    assert not report["errors"]
    assert not [m for m in report["messages"] if m["severity"] >= 2]
