"""TrainJob (Kubeflow Trainer v2.2) rendering against the upstream CRD schema, and the create / wait /
log / delete loop against kmock's Kubernetes emulator with a test controller playing Trainer; the
kubeflow SDK's own TrainerClient reads what we created."""

from __future__ import annotations

import argparse

import pytest
import yaml
from helpers.kube import (
    NODE0_LOG,
    Controller,
    FakeTime,
    chart_runtime,
    crd_validator,
    load_yaml,
    schema_file,
    write_kubeconfig,
)

from mhubert.errors import BadInput
from mhubert.jobs import kube, launch
from mhubert.jobs import trainjob as tj
from mhubert.jobs.spec import JobSpec

TRAIN_ARGS = ["--preset", "base", "--manifest", "s3://b/corpus/manifest.tsv", "--labels", "s3://b/iter1/labels",
              "--out", "s3://b/iter1/train"]
G, V, P = tj.GROUP, tj.VERSION, tj.PLURAL


def _spec(**kw) -> JobSpec:
    base = dict(name="mhubert-it1", image="registry.example/mhubert-gpu:0.1.0", nodes=2, gpus_per_node=4,
                train_args=list(TRAIN_ARGS), s3_endpoint="http://minio:9000")
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture(scope="module")
def crd():
    return crd_validator("trainer.kubeflow.org_trainjobs.yaml")


def _env(obj) -> dict:
    return {e["name"]: e for e in obj["spec"]["trainer"]["env"]}


def _pod_patch(m) -> dict:
    (patch,) = m["spec"]["runtimePatches"]
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == "node"
    return rj["template"]["spec"]["template"]


@pytest.mark.parametrize("nodes,gpus", [(1, 0), (1, 1), (2, 4), (4, 8)])
def test_render_validates_against_crd(crd, nodes, gpus):
    import jsonschema

    m = tj.render(_spec(nodes=nodes, gpus_per_node=gpus, active_deadline_seconds=3600,
                        service_account="trainer", node_selector={"gpu": "h100"},
                        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        pvcs={"corpus": "/data"}), namespace="team-a")
    crd.validate(m)
    # the schema is not a no-op: v2.2 takes numProcPerNode as an integer, and has no podTemplateOverrides
    with pytest.raises(jsonschema.ValidationError):
        crd.validate({**m, "spec": {**m["spec"],
                                    "trainer": {**m["spec"]["trainer"], "numProcPerNode": "auto"}}})
    with pytest.raises(jsonschema.ValidationError):
        crd.validate({**m, "spec": {**m["spec"], "activeDeadlineSeconds": 0}})


def test_render_values():
    m = tj.render(_spec(nodes=3, gpus_per_node=8, active_deadline_seconds=7200, service_account="trainer",
                        node_selector={"gpu": "h100"}, pvcs={"corpus": "/data"},
                        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        labels={"mhubert/iteration": "1"}))
    assert m["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and m["kind"] == "TrainJob"
    assert "namespace" not in m["metadata"]          # resolved at run time, not baked in
    s = m["spec"]
    assert s["runtimeRef"] == {"name": "mhubert-torch", "apiGroup": "trainer.kubeflow.org",
                               "kind": "TrainingRuntime"}
    t = s["trainer"]
    assert t["image"] == "registry.example/mhubert-gpu:0.1.0"
    assert t["numNodes"] == 3 and t["numProcPerNode"] == 8
    assert t["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert t["resourcesPerNode"]["requests"]["nvidia.com/gpu"] == 8
    # a bare torchrun: the torch plugin's PET_* variables say how many nodes/processes and who is master
    assert t["command"] == ["torchrun", "-m", "mhubert.train"] and t["args"] == TRAIN_ARGS
    launch_flags = ("--nnodes", "--nproc", "--master", "--node")
    assert not any(a.startswith(launch_flags) for a in t["command"] + t["args"])
    env = _env(m)
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "mhubert-s3",
                                                                     "key": "AWS_ACCESS_KEY_ID"}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"]["value"] == "1"
    assert s["activeDeadlineSeconds"] == 7200
    pod = _pod_patch(m)
    assert pod["metadata"]["labels"] == {"mhubert/iteration": "1"}
    ps = pod["spec"]
    assert ps["serviceAccountName"] == "trainer" and ps["nodeSelector"] == {"gpu": "h100"}
    assert ps["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    vols = {v["name"]: v for v in ps["volumes"]}
    assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
    assert {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "corpus"}} in ps["volumes"]
    (container,) = ps["containers"]
    assert container["name"] == "node"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/dev/shm", "/data"}
    # CPU only: no GPU request, no NCCL variables; optional fields stay out
    m1 = tj.render(_spec(nodes=1, gpus_per_node=0, s3_secret=None))
    assert m1["spec"]["trainer"]["numProcPerNode"] == 1
    assert "nvidia.com/gpu" not in m1["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert not any(k.startswith(("NCCL", "TORCH_NCCL", "AWS_ACCESS")) for k in _env(m1))
    assert "activeDeadlineSeconds" not in m1["spec"]
    assert "serviceAccountName" not in _pod_patch(m1)["spec"]


def test_render_round_trips_through_the_trainer_api_models():
    """The SDK's models of the Trainer API (kubeflow-trainer-api) read every field we write."""
    models = pytest.importorskip("kubeflow_trainer_api.models")
    m = tj.render(_spec(service_account="trainer", node_selector={"gpu": "h100"}, pvcs={"corpus": "/data"},
                        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        active_deadline_seconds=60, labels={"mhubert/iteration": "2"}), "team-a")
    assert models.TrainerV1alpha1TrainJob.from_dict(m).to_dict() == m


def test_names_follow_the_crd_rule():
    """The CRD's CEL rule on metadata.name (not evaluated by jsonschema) and render agree."""
    import re

    crd_doc = load_yaml(schema_file("trainer.kubeflow.org_trainjobs.yaml"))
    rules = [r["rule"] for r in crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
             ["x-kubernetes-validations"] if "matches(" in r["rule"]]
    (pattern,) = [re.search(r"matches\('(.+)'\)", r).group(1) for r in rules]
    for name in ("mhubert-it1", "a", "1st-run", "run-", "r2d2"):
        upstream_ok = re.match(pattern, name) is not None
        try:
            tj.render(_spec(name=name))
            ours = True
        except BadInput:
            ours = False
        assert ours == upstream_ok, name


def test_cluster_runtime_option(crd):
    m = tj.render(_spec(runtime="torch-distributed", runtime_kind="ClusterTrainingRuntime"))
    crd.validate(m)
    assert m["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert m["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"


@pytest.mark.parametrize("kw,word", [({"name": "Bad_Name"}, "DNS-1123"), ({"nodes": 0}, "nodes"),
                                     ({"image": ""}, "image"), ({"runtime_kind": "Runtime"}, "runtime_kind"),
                                     ({"active_deadline_seconds": 0}, "active_deadline"),
                                     ({"pvcs": {"data": "relative"}}, "CLAIM")])
def test_render_bad_input(kw, word):
    with pytest.raises(BadInput, match=word):
        tj.render(_spec(**kw))


def _render_job(capsys, *argv):
    parser = argparse.ArgumentParser()
    from mhubert.jobs.cli import add_render_job

    add_render_job(parser.add_subparsers())
    args = parser.parse_args(["render-job", *argv])
    assert args.func(args) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_cli_render_job_trainjob(crd, capsys):
    m = _render_job(capsys, "--image", "img:1", "--nodes", "2", "--gpus-per-node", "2", "--manifest", "s3://b/m.tsv",
                    "--labels", "s3://b/l", "--out", "s3://b/o", "--set", "train.max_update=10",
                    "--env", "HF_HUB_OFFLINE=1", "--toleration", "nvidia.com/gpu=present:NoSchedule",
                    "--node-selector", "pool=gpu", "--pvc", "corpus:/data", "--active-deadline", "600")
    crd.validate(m)                                   # the default launcher is trainjob
    t = m["spec"]["trainer"]
    assert (t["image"], t["numNodes"], t["numProcPerNode"]) == ("img:1", 2, 2)
    assert t["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 2
    assert t["args"][-2:] == ["--set", "train.max_update=10"] and t["args"][:2] == ["--preset", "base"]
    assert _env(m)["HF_HUB_OFFLINE"]["value"] == "1"
    assert m["spec"]["runtimeRef"]["name"] == "mhubert-torch"
    ps = _pod_patch(m)["spec"]
    assert ps["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                  "effect": "NoSchedule"}]
    assert ps["nodeSelector"] == {"pool": "gpu"} and m["spec"]["activeDeadlineSeconds"] == 600
    m2 = _render_job(capsys, "--image", "img:1", "--manifest", "m", "--labels", "l", "--out", "o",
                     "--runtime", "torch-distributed")
    assert m2["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"


@pytest.mark.parametrize("argv,word", [(["--toleration", "gpu"], "--toleration"), (["--env", "X"], "--env"),
                                       (["--pvc", "data"], "--pvc"),
                                       (["--node-selector", "x"], "--node-selector")])
def test_cli_bad_values_are_one_line(argv, word, capsys):
    from mhubert.cli import main

    assert main(["train", "render-job", "--image", "i", "--manifest", "m", "--labels", "l", "--out", "o",
                 *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------- against the emulator

def _controller(api, script, **kw):
    return Controller(api, "TrainJob", "team-a", "mhubert-it1", script,
                      validator=crd_validator("trainer.kubeflow.org_trainjobs.yaml"), **kw)


def test_run_streams_node0_logs_and_deletes_on_success(k8s):
    api, _ = k8s
    seen: list[str] = []
    lines: list[str] = []
    ctl = _controller(api, ["created", "running", "complete"])
    obj = launch.run_training("trainjob", _spec(), namespace="team-a", api=api, poll_s=0, sleep=ctl,
                              on_status=lambda p, o: seen.append(p), sink=lines.append)
    assert seen == ["Pending", "Created", "Running", "Complete"]
    assert kube.condition(obj, "Complete")["reason"] == "JobSetCompleted"
    assert NODE0_LOG.decode().splitlines() == [x for x in lines if x.startswith("[rank0]")]
    assert "TrainJob team-a/mhubert-it1: Running" in lines
    with pytest.raises(kube.MhubertError, match="HTTP 404"):       # on-success: deleted
        kube.get(tj.TRAINJOB, "mhubert-it1", "team-a", api)


def test_failure_surfaces_reason_and_keeps_the_job(k8s):
    api, _ = k8s
    ctl = _controller(api, ["created", "running",
                            "failed:JobSetFailed:jobset failed: node-0 exited with code 137 (OOMKilled)"])
    with pytest.raises(kube.JobFailed,
                       match=r"TrainJob team-a/mhubert-it1 failed: JobSetFailed: .*OOMKilled"):
        launch.run_training("trainjob", _spec(), namespace="team-a", api=api, poll_s=0, sleep=ctl,
                            sink=lambda line: None)
    assert kube.get(tj.TRAINJOB, "mhubert-it1", "team-a", api)       # kept for inspection


@pytest.mark.parametrize("policy,kept", [("always", False), ("never", True), ("on-success", True)])
def test_timeout_and_delete_policy(k8s, policy, kept):
    api, _ = k8s
    fake = FakeTime(_controller(api, ["created"] + ["idle"] * 10))
    with pytest.raises(kube.JobTimeout, match="did not finish within 60 s.*last status: Created"):
        launch.run_training("trainjob", _spec(), namespace="team-a", api=api, timeout_s=60, poll_s=15,
                            sleep=fake.sleep, clock=fake.monotonic, delete_policy=policy,
                            sink=lambda line: None)
    assert fake.now == 60
    items = api.list_namespaced_custom_object(G, V, "team-a", P)["items"]
    assert bool(items) is kept


def test_bad_delete_policy(k8s):
    with pytest.raises(BadInput, match="delete policy"):
        launch.run_training("trainjob", _spec(), namespace="team-a", api=k8s[0], delete_policy="sometimes")


def test_trainer_client_reads_our_job(k8s):
    """The kubeflow SDK's TrainerClient parses the TrainJob we created and the chart's runtime (its
    pydantic models of the Trainer API), and agrees on the job's state and its node-0 step."""
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import TrainerClient

    api, cfg = k8s
    runtime = chart_runtime("team-a")                  # the platform chart's, as installed
    api.create_namespaced_custom_object(G, V, "team-a", "trainingruntimes", runtime)
    kube.submit(tj.TRAINJOB, tj.render(_spec(), "team-a"), "team-a", api)
    ctl = _controller(api, ["created", "running", "complete"])
    for _ in range(3):
        ctl()
    tc = TrainerClient(backend_config=KubernetesBackendConfig(namespace="team-a", client_configuration=cfg))
    job = tc.get_job("mhubert-it1")
    assert job.status == "Complete" and job.num_nodes == 2
    assert [s.name for s in job.steps] == ["node-0"]
    assert job.runtime.name == "mhubert-torch" and job.runtime.trainer.framework == "torch"


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
def test_job_cli_submit_wait_and_delete(k8s, tmp_path, monkeypatch, capsys, launcher):
    """``mhubert job submit`` / ``job wait --delete always`` through a kubeconfig, as a user would."""
    from mhubert.cli import main

    api, cfg = k8s
    kind = launch.KINDS[launcher]
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", cfg.host, "team-b")))
    monkeypatch.setenv("MHUBERT_NAMESPACE", "team-b")
    assert main(["job", "submit", "--launcher", launcher, "--name", "cli-job", "--image", "img:1",
                 "--manifest", "m", "--labels", "l", "--out", "o", "--gpus-per-node", "0"]) == 0
    obj = api.get_namespaced_custom_object(kind.group, kind.version, "team-b", kind.plural, "cli-job")
    assert obj["kind"] == kind.kind and "img:1" in yaml.safe_dump(obj)
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
              "message": "deadline exceeded", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    api.patch_namespaced_custom_object(kind.group, kind.version, "team-b", kind.plural, "cli-job",
                                       {"status": {"conditions": [failed]}})
    assert main(["job", "wait", "cli-job", "--launcher", launcher, "--timeout", "5", "--poll", "0",
                 "--delete", "always"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{kind.kind} team-b/cli-job failed: DeadlineExceeded: deadline exceeded")
    assert len(err.splitlines()) == 1
    assert not api.list_namespaced_custom_object(kind.group, kind.version, "team-b", kind.plural)["items"]


def test_cli_errors_name_the_problem(k8s, tmp_path, monkeypatch, capsys):
    """A job that does not exist, and an API server that cannot be reached: one line each, no traceback."""
    import socket

    from mhubert.cli import main

    api, cfg = k8s
    monkeypatch.setenv("MHUBERT_NAMESPACE", "team-b")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", cfg.host, "team-b")))
    assert main(["job", "wait", "no-such-job", "--timeout", "5", "--poll", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "reading TrainJob team-b/no-such-job: HTTP 404" in err and len(err.splitlines()) == 1
    assert main(["job", "wait", "x", "--poll", "-1"]) == 2
    assert "poll interval >= 0" in capsys.readouterr().err
    with socket.socket() as s:                     # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "closed", closed, "team-b")))
    assert main(["job", "submit", "--name", "j", "--image", "i", "--manifest", "m", "--labels", "l",
                 "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot reach the Kubernetes API server at {closed}" in err
    assert "creating TrainJob team-b/j" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
