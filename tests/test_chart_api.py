"""The API chart renders (helm-python-sdk, offline), lints, and every built-in object validates
strictly against the Kubernetes schema; the pod is locked down and its env matches api.settings."""

from __future__ import annotations

import dataclasses
import os

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from api.settings import ENV_PREFIX, Settings

CHART = os.path.join(os.path.dirname(__file__), "..", "charts", "mhubert-api")
K8S = "1.30.0"
FULL = {"serviceMonitor": {"enabled": True}, "gpu": {"enabled": True, "count": 1},
        "auth": {"existingSecret": "api-keys", "adminKeyKey": "admin-key"},
        "s3": {"existingSecret": "s3-creds", "endpoint": "http://minio.minio:9000"},
        "model": {"uri": "s3://b/serving/model", "lidUri": "s3://b/serving/lid", "name": "mhubert"}}


def render(values: dict | None = None) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name="rel", namespace="speech")
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("values", [None, FULL, {"autoscaling": {"enabled": False}, "pdb": {"enabled": False},
                                                "serviceAccount": {"create": False}}])
def test_renders_and_validates_strictly(values):
    docs = render(values)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRD: no built-in schema (kubernetes-validate would only warn)
        kubernetes_validate.validate(d, K8S, strict=True)


@pytest.mark.parametrize("values", [None, {"kind": "InferenceService"}])
def test_lint_is_clean(values):
    report = helm.lint(CHART, values, strict=True, kube_version="v" + K8S)
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report


def test_defaults_kinds_and_optional_servicemonitor():
    kinds = by_kind(render())
    assert kinds["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert kinds["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert "ServiceMonitor" not in kinds
    sm = by_kind(render(FULL))["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "replicas" not in kinds["Deployment"]["spec"]  # the HPA owns it
    fixed = by_kind(render({"autoscaling": {"enabled": False}, "replicaCount": 3}))
    assert fixed["Deployment"]["spec"]["replicas"] == 3


def test_pod_is_locked_down_with_probes():
    pod = by_kind(render(FULL))["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["resources"]["requests"]["cpu"]
    # secrets by reference only: no literal credentials anywhere in the rendered manifests
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert env["MHUBERT_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "api-keys", "key": "admin-key"}
    keys_file = env["MHUBERT_API_KEYS_FILE"]["value"]
    key_dir = os.path.dirname(keys_file)
    assert key_dir in mounts and vols[mounts[key_dir]]["secret"]["secretName"] == "api-keys"
    assert not any(d["kind"] == "Secret" for d in render(FULL))


def test_configmap_env_is_what_settings_reads():
    cm = by_kind(render(FULL))["ConfigMap"]["data"]
    fields = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    ours = {k for k in cm if k.startswith(ENV_PREFIX)}
    assert ours <= fields, ours - fields
    s = Settings.from_env(cm)  # the rendered strings parse into valid settings
    assert (s.model_uri, s.lid_uri) == ("s3://b/serving/model", "s3://b/serving/lid")
    assert (s.max_batch_size, s.port) == (8, 8080)
    assert cm["AWS_ENDPOINT_URL"] == "http://minio.minio:9000"


@pytest.mark.parametrize("bad", [{"batching": {"maxBatchSize": 0}}, {"serving": {"device": "tpu"}},
                                 {"model": {"uri": ""}}, {"unknownKey": 1}, {"service": {"port": 70000}}])
def test_schema_rejects_bad_values(bad):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(chart.merge_values(bad))


def _schemas_dir() -> str | None:
    """../shared/schemas beside the repository (a worktree's: beside the main checkout)."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    roots = [os.path.dirname(here)]
    try:
        common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        roots.append(os.path.dirname(os.path.abspath(os.path.join(here, common))))
    except (OSError, subprocess.CalledProcessError):
        pass
    for root in roots:
        d = os.path.join(root, "..", "shared", "schemas")
        if os.path.isdir(d):
            return d
    return None


ISVC_ONLY = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "timeout", "labels", "annotations")


@pytest.fixture(scope="module")
def isvc_schema():
    d = _schemas_dir()
    if d is None:
        if os.environ.get("CI") or os.environ.get("MHUBERT_REQUIRE_SCHEMAS"):
            pytest.fail("../shared/schemas is absent")
        pytest.skip("../shared/schemas is absent")
    import jsonschema

    with open(os.path.join(d, "serving.kserve.io_inferenceservices.yaml")) as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("values", [{}, FULL])
def test_inferenceservice_validates_against_the_kserve_crd(isvc_schema, values):
    docs = render({**values, "kind": "InferenceService"})
    kinds = by_kind(docs)
    assert "InferenceService" in kinds
    assert not {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                "ServiceMonitor"} & set(kinds)  # KServe owns them
    isvc = kinds["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    errors = sorted(isvc_schema.iter_errors(isvc), key=str)
    assert not errors, [e.message for e in errors]
    # the predictor's pod fields are a strict Kubernetes PodSpec: validate them as a Pod
    pod_spec = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in ISVC_ONLY}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, K8S, strict=True)
    for d in docs:
        if d["kind"] != "InferenceService":
            kubernetes_validate.validate(d, K8S, strict=True)


def test_inferenceservice_runs_the_deployments_pod_on_8080():
    isvc = by_kind(render({**FULL, "kind": "InferenceService"}))["InferenceService"]
    pred = isvc["spec"]["predictor"]
    dep_pod = by_kind(render(FULL))["Deployment"]["spec"]["template"]["spec"]
    c = pred["containers"][0]
    assert c["name"] == "kserve-container" and c["ports"][0]["containerPort"] == 8080
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    dep_c = dep_pod["containers"][0]
    assert {**c, "name": "api"} == dep_c  # the same container, probes, env and security context
    assert pred["securityContext"] == dep_pod["securityContext"]
    assert pred["volumes"] == dep_pod["volumes"]
    assert pred["terminationGracePeriodSeconds"] == dep_pod["terminationGracePeriodSeconds"] == 30
    assert (pred["minReplicas"], pred["maxReplicas"]) == (2, 8)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_drain_timeout_below_grace_period():
    cm = by_kind(render())["ConfigMap"]["data"]
    assert float(cm["MHUBERT_DRAIN_TIMEOUT_S"]) < 30 and cm["MHUBERT_LAZY"] == "true"
    with pytest.raises(helm.HelmError, match="drainTimeoutS"):
        render({"terminationGracePeriodSeconds": 20, "shutdown": {"drainTimeoutS": 25}})
