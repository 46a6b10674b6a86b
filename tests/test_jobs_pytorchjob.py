"""PyTorchJob rendering (against the Training Operator's CRD schema, for clusters on the v1 operator)
and the create / wait / log / delete loop against kmock's Kubernetes emulator, with a test controller
playing the Training Operator."""

from __future__ import annotations

import pytest
import yaml
from helpers.kube import NODE0_LOG, Controller, FakeTime, crd_validator

from mhubert.errors import BadInput
from mhubert.jobs import kube, launch
from mhubert.jobs import pytorchjob as pj
from mhubert.jobs.spec import JobSpec


def _spec(**kw) -> JobSpec:
    base = dict(name="mhubert-it1", image="registry.example/mhubert-gpu:0.1.0", nodes=2, gpus_per_node=4,
                train_args=["--preset", "base", "--manifest", "s3://b/corpus/manifest.tsv",
                            "--labels", "s3://b/iter1/labels", "--out", "s3://b/iter1/train"],
                s3_endpoint="http://minio:9000")
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture(scope="module")
def crd_schema():
    return crd_validator("kubeflow.org_pytorchjobs.yaml")


@pytest.mark.parametrize("nodes,gpus", [(1, 0), (1, 1), (2, 4), (4, 8)])
def test_render_validates_against_crd(crd_schema, nodes, gpus):
    import jsonschema

    m = pj.render(_spec(nodes=nodes, gpus_per_node=gpus, service_account="trainer", node_selector={"a": "b"},
                        tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                        pvcs={"corpus": "/data"}, active_deadline_seconds=60), namespace="team-a")
    crd_schema.validate(m)
    # a schema that accepts anything would not catch this
    bad = {**m, "spec": {**m["spec"], "nprocPerNode": 4}}
    with pytest.raises(jsonschema.ValidationError):
        crd_schema.validate(bad)


def test_render_content():
    m = pj.render(_spec(nodes=3, gpus_per_node=8))
    assert m["apiVersion"] == "kubeflow.org/v1" and m["kind"] == "PyTorchJob"
    assert "namespace" not in m["metadata"]  # resolved at run time, not baked in
    s = m["spec"]
    reps = s["pytorchReplicaSpecs"]
    assert reps["Master"]["replicas"] == 1 and reps["Worker"]["replicas"] == 2
    assert s["nprocPerNode"] == "8"
    assert s["elasticPolicy"] == {"rdzvBackend": "c10d", "rdzvHost": "mhubert-it1-master-0",
                                  "rdzvPort": 29400, "rdzvId": "mhubert-it1", "minReplicas": 3,
                                  "maxReplicas": 3, "maxRestarts": 3}
    assert s["runPolicy"]["cleanPodPolicy"] == "Running"
    assert s["runPolicy"]["ttlSecondsAfterFinished"] > 0
    for r in reps.values():
        assert r["restartPolicy"] == "OnFailure"
        c = r["template"]["spec"]["containers"][0]
        assert c["name"] == "pytorch"
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert c["command"][:5] == ["python", "-m", "torch.distributed.run", "--nproc_per_node", "8"]
        assert c["command"][5:7] == ["-m", "mhubert.train"]
        assert c["command"][7:] == _spec().train_args
        env = {e["name"]: e for e in c["env"]}
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "mhubert-s3",
                                                                         "key": "AWS_ACCESS_KEY_ID"}
        assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
        assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"]["value"] == "1"
    # single node: no Worker replica; CPU only: no GPU limit, no NCCL env
    m1 = pj.render(_spec(nodes=1, gpus_per_node=0))
    assert set(m1["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    c = m1["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert not any(e["name"].startswith(("NCCL", "TORCH_NCCL")) for e in c["env"])
    assert c["command"][4] == "1"


@pytest.mark.parametrize("kw,word", [({"name": "Bad_Name"}, "DNS-1123"), ({"nodes": 0}, "nodes"),
                                     ({"image": ""}, "image"), ({"clean_pod_policy": "x"}, "clean_pod")])
def test_render_bad_input(kw, word):
    with pytest.raises(BadInput, match=word):
        pj.render(_spec(**kw))


def test_current_namespace(tmp_path, monkeypatch):
    f = tmp_path / "namespace"
    monkeypatch.delenv("MHUBERT_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert kube.current_namespace(str(f)) == "default"
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert kube.current_namespace(str(f)) == "from-env"
    f.write_text("from-sa\n")
    assert kube.current_namespace(str(f)) == "from-sa"


def test_cli_render_job(crd_schema, capsys):
    import argparse

    from mhubert.jobs.cli import add_render_job

    parser = argparse.ArgumentParser()
    add_render_job(parser.add_subparsers())
    args = parser.parse_args(["render-job", "--launcher", "pytorchjob", "--image", "img:1", "--nodes", "2",
                              "--gpus-per-node", "2", "--manifest", "s3://b/m.tsv", "--labels", "s3://b/l",
                              "--out", "s3://b/o", "--set", "max_update=10", "--env", "HF_HUB_OFFLINE=1"])
    assert args.func(args) == 0
    m = yaml.safe_load(capsys.readouterr().out)
    crd_schema.validate(m)
    assert m["kind"] == "PyTorchJob" and m["spec"]["nprocPerNode"] == "2"
    reps = m["spec"]["pytorchReplicaSpecs"]
    assert reps["Master"]["replicas"] == 1 and reps["Worker"]["replicas"] == 1     # 2 nodes
    for r in reps.values():
        (c,) = r["template"]["spec"]["containers"]
        assert c["image"] == "img:1"
        assert c["command"][:7] == ["python", "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                                    "mhubert.train"]
        assert c["command"][7:9] == ["--preset", "base"] and c["command"][-2:] == ["--set", "max_update=10"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
        assert {e["name"]: e.get("value") for e in c["env"]}["HF_HUB_OFFLINE"] == "1"


# ---------------------------------------------------------------- against a Kubernetes emulator

def _controller(api, ns, script):
    return Controller(api, "PyTorchJob", ns, "mhubert-it1", script,
                      validator=crd_validator("kubeflow.org_pytorchjobs.yaml"))


def test_submit_succeed_logs_and_delete(k8s):
    api, _ = k8s
    seen: list[str] = []
    lines: list[str] = []
    ctl = _controller(api, "team-a", ["created", "running", "complete"])
    obj = launch.run_training("pytorchjob", _spec(), namespace="team-a", api=api, poll_s=0, sleep=ctl,
                              on_status=lambda t, o: seen.append(t), sink=lines.append, delete_policy="never")
    assert seen == ["Pending", "Created", "Running", "Succeeded"]
    assert kube.latest_condition(obj)["type"] == "Succeeded"
    assert NODE0_LOG.decode().splitlines() == [x for x in lines if x.startswith("[rank0]")]
    stored = api.get_namespaced_custom_object(pj.GROUP, pj.VERSION, "team-a", pj.PLURAL, "mhubert-it1")
    assert stored["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert stored["metadata"]["namespace"] == "team-a"
    # a retried task re-submits the same job: it waits on the existing one instead of failing
    again = kube.submit(pj.PYTORCHJOB, pj.render(_spec(), "team-a"), "team-a", api)
    assert again["metadata"]["name"] == "mhubert-it1"


def test_failure_surfaces_reason(k8s):
    api, _ = k8s
    ctl = _controller(api, "default", [
        "created", "running",
        "failed:PyTorchJobFailed:PyTorchJob mhubert-it1 is failed because 1 Master replica(s) failed."])
    with pytest.raises(kube.JobFailed, match=r"PyTorchJob default/mhubert-it1 failed: PyTorchJobFailed: "
                                             r".*1 Master replica\(s\) failed"):
        launch.run_training("pytorchjob", _spec(), namespace="default", api=api, poll_s=0, sleep=ctl,
                            sink=lambda line: None)


def test_timeout_deletes_with_policy_always(k8s):
    api, _ = k8s
    fake = FakeTime(_controller(api, "default", ["created", "running"] + ["idle"] * 10))
    with pytest.raises(kube.JobTimeout, match="did not finish within 60 s.*Running"):
        launch.run_training("pytorchjob", _spec(), namespace="default", api=api, timeout_s=60, poll_s=15,
                            sleep=fake.sleep, clock=fake.monotonic, delete_policy="always",
                            sink=lambda line: None)
    assert fake.now == 60
    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as e:
        api.get_namespaced_custom_object(pj.GROUP, pj.VERSION, "default", pj.PLURAL, "mhubert-it1")
    assert e.value.status == 404
