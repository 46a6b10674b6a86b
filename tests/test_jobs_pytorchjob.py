"""PyTorchJob rendering (against the Training Operator's CRD schema) and the create/wait loop
against kmock's Kubernetes emulator; the test plays the Training Operator by patching status."""

from __future__ import annotations

import asyncio
import threading

import pytest
import yaml

from mhubert.errors import BadInput
from mhubert.jobs import pytorchjob as pj


def _spec(**kw) -> pj.JobSpec:
    base = dict(name="mhubert-it1", image="registry.example/mhubert-gpu:0.1.0", nodes=2, gpus_per_node=4,
                train_args=["--preset", "base", "--manifest", "s3://b/corpus/manifest.tsv",
                            "--labels", "s3://b/iter1/labels", "--out", "s3://b/iter1/train"],
                s3_endpoint="http://minio:9000")
    base.update(kw)
    return pj.JobSpec(**base)


@pytest.fixture(scope="module")
def crd_schema(shared_schemas):
    return shared_schemas.crd("kubeflow.org_pytorchjobs.yaml")


@pytest.mark.parametrize("nodes,gpus", [(1, 0), (1, 1), (2, 4), (4, 8)])
def test_render_validates_against_crd(crd_schema, nodes, gpus):
    m = pj.render(_spec(nodes=nodes, gpus_per_node=gpus), namespace="team-a")
    crd_schema.validate(m)
    # a schema that accepts anything would not catch this: every error, with its body
    bad = {**m, "spec": {**m["spec"], "nprocPerNode": 4}}
    assert crd_schema.errors(bad) == ["spec/nprocPerNode: 4 is not of type 'string'"]


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
    assert pj.current_namespace(str(f)) == "default"
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert pj.current_namespace(str(f)) == "from-env"
    f.write_text("from-sa\n")
    assert pj.current_namespace(str(f)) == "from-sa"


def test_cli_render_job(capsys):
    import argparse

    from mhubert.jobs.cli import add_render_job

    parser = argparse.ArgumentParser()
    add_render_job(parser.add_subparsers())
    args = parser.parse_args(["render-job", "--image", "img:1", "--nodes", "2", "--gpus-per-node", "2",
                              "--manifest", "s3://b/m.tsv", "--labels", "s3://b/l", "--out", "s3://b/o",
                              "--set", "max_update=10"])
    assert args.func(args) == 0
    m = yaml.safe_load(capsys.readouterr().out)
    c = m["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert c["command"][-2:] == ["--set", "max_update=10"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2


# ---------------------------------------------------------------- against a Kubernetes emulator

class _Emulator:
    """kmock's KubernetesEmulator served over HTTP from a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _enter(self) -> None:
        import kmock

        self.emulator = kmock.KubernetesEmulator()
        self.emulator.resources["kubeflow.org/v1/pytorchjobs"] = {"kind": "PyTorchJob", "namespaced": True}
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

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._exit(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def k8s_api():
    pytest.importorskip("kmock")
    from kubernetes import client

    with _Emulator() as url:
        cfg = client.Configuration()
        cfg.host = url
        with client.ApiClient(cfg) as api_client:
            yield client.CustomObjectsApi(api_client), cfg


def _operator(api, ns: str, name: str, script: list[tuple[str, str, str]]):
    """A ``sleep`` replacement that advances the job one condition per poll, like the operator."""
    steps = iter(script)
    conds: list[dict] = []

    def step(_seconds: float) -> None:
        ctype, reason, message = next(steps)
        for c in conds:
            if ctype in pj.TERMINAL and c["type"] in ("Running", "Created"):
                c["status"] = "False"
        conds.append({"type": ctype, "status": "True", "reason": reason, "message": message})
        api.patch_namespaced_custom_object(pj.GROUP, pj.VERSION, ns, pj.PLURAL, name,
                                           {"status": {"conditions": [dict(c) for c in conds]}})
    return step


def test_submit_and_succeed(k8s_api):
    api, _ = k8s_api
    seen: list[str] = []
    sleep = _operator(api, "team-a", "mhubert-it1", [
        ("Created", "PyTorchJobCreated", "created"), ("Running", "PyTorchJobRunning", "running"),
        ("Succeeded", "PyTorchJobSucceeded", "PyTorchJob mhubert-it1 successfully completed.")])
    obj = pj.run(_spec(), namespace="team-a", api=api, poll_s=0, sleep=sleep,
                 on_status=lambda t, o: seen.append(t))
    assert seen == ["Pending", "Created", "Running", "Succeeded"]
    assert pj.latest_condition(obj)["type"] == "Succeeded"
    stored = api.get_namespaced_custom_object(pj.GROUP, pj.VERSION, "team-a", pj.PLURAL, "mhubert-it1")
    assert stored["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert stored["metadata"]["namespace"] == "team-a"
    # a retried task re-submits the same job: it waits on the existing one instead of failing
    again = pj.submit(pj.render(_spec(), "team-a"), "team-a", api)
    assert again["metadata"]["name"] == "mhubert-it1"


def test_failure_surfaces_reason(k8s_api):
    api, _ = k8s_api
    sleep = _operator(api, "default", "mhubert-it1", [
        ("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", ""),
        ("Failed", "PyTorchJobFailed",
         "PyTorchJob mhubert-it1 is failed because 1 Master replica(s) failed.")])
    with pytest.raises(pj.JobFailed, match=r"PyTorchJobFailed.*1 Master replica\(s\) failed"):
        pj.run(_spec(), namespace="default", api=api, poll_s=0, sleep=sleep)


def test_timeout(k8s_api):
    api, _ = k8s_api
    now = [0.0]
    operator = _operator(api, "default", "mhubert-it1", [("Created", "c", ""), ("Running", "r", "")] +
                         [("Running", "r", "")] * 10)

    def sleep(s: float) -> None:
        now[0] += s
        operator(s)

    with pytest.raises(pj.JobTimeout, match="did not finish within 60 s.*Running"):
        pj.run(_spec(), namespace="default", api=api, timeout_s=60, poll_s=15, sleep=sleep,
               clock=lambda: now[0], delete_on_timeout=True)
    assert now[0] == 60
    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as e:
        api.get_namespaced_custom_object(pj.GROUP, pj.VERSION, "default", pj.PLURAL, "mhubert-it1")
    assert e.value.status == 404


def test_training_client_sees_job(k8s_api):
    """kubeflow-training's own client reads the job we created and agrees it succeeded."""
    api, cfg = k8s_api
    from kubeflow.training import TrainingClient

    sleep = _operator(api, "default", "mhubert-it1", [("Created", "c", ""), ("Succeeded", "s", "done")])
    pj.run(_spec(), namespace="default", api=api, poll_s=0, sleep=sleep)
    tc = TrainingClient(client_configuration=cfg, namespace="default")
    assert tc.is_job_succeeded("mhubert-it1", job_kind="PyTorchJob")


def test_job_cli_submit_and_wait(k8s_api, tmp_path, monkeypatch, capsys):
    """``mhubert job submit`` / ``job wait`` through a kubeconfig, as a user would run them."""
    import argparse

    from mhubert.jobs.cli import register

    api, cfg = k8s_api
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": cfg.host}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u", "namespace": "team-b"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MHUBERT_NAMESPACE", "team-b")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("job", "submit", "--name", "cli-job", "--image", "img:1", "--manifest", "m", "--labels", "l",
               "--out", "o", "--gpus-per-node", "0") == 0
    obj = api.get_namespaced_custom_object(pj.GROUP, pj.VERSION, "team-b", pj.PLURAL, "cli-job")
    (container,) = obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert container["image"] == "img:1"
    api.patch_namespaced_custom_object(pj.GROUP, pj.VERSION, "team-b", pj.PLURAL, "cli-job", {"status": {
        "conditions": [{"type": "Failed", "status": "True", "reason": "OOMKilled", "message": "pod oom"}]}})
    with pytest.raises(pj.JobFailed, match="OOMKilled: pod oom"):
        run("job", "wait", "cli-job", "--timeout", "5", "--poll", "0")
