"""The train component's cluster branch end to end, for both launchers: its own code path
(components/train.py) creates the job in kmock's Kubernetes emulator through a kubeconfig, a test
controller moves the job as Kubeflow Trainer / the Training Operator would (created, running, then
Complete, or Failed with a reason, or no progress until the timeout), and the component publishes its
KFP outputs, or fails with the controller's reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.kube import NODE0_LOG, Controller, FakeTime, chart_runtime, crd_validator, write_kubeconfig

from mhubert import storage
from mhubert.jobs import kube

KINDS = {"trainjob": ("TrainJob", "trainer.kubeflow.org", "v1alpha1", "trainjobs",
                      "trainer.kubeflow.org_trainjobs.yaml"),
         "pytorchjob": ("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs", "kubeflow.org_pytorchjobs.yaml")}
RESULT = {"step": 6, "final_loss": 4.25, "num_classes": 100, "label_rate": 100, "world_size": 4}


class _Artifact:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict = {}

    def log_metric(self, key, value) -> None:
        self.metadata[key] = value


@pytest.fixture
def cluster(k8s, tmp_path, monkeypatch):
    """The component's view of a cluster: a kubeconfig to the emulator, this pod's namespace and S3
    endpoint, and the platform chart's TrainingRuntime installed."""
    api, cfg = k8s
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", cfg.host, "team-a")))
    monkeypatch.setenv("MHUBERT_NAMESPACE", "team-a")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.kubeflow:9000")
    rt = chart_runtime("team-a")
    api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "team-a", "trainingruntimes", rt)
    return api


def _run(api, tmp_path, monkeypatch, launcher, script, timeout_hours=1.0):
    from components.train import train

    kind, *_, crd = KINDS[launcher]
    root = str(tmp_path / "runs")
    out = storage.join(root, "iter1", "train")

    def trained():     # what the training pods would have committed before the job completes
        storage.write_marker(out, RESULT)

    ctl = Controller(api, kind, "team-a", None, script, on_complete=trained, validator=crd_validator(crd))
    fake = FakeTime(ctl)
    monkeypatch.setattr(kube, "time", fake)
    arts = {n: _Artifact(tmp_path / n) for n in ("model", "metrics", "loss_curve")}
    call = dict(manifest_uri="s3://b/corpus/manifest.tsv", labels_uri="s3://b/iter1/labels",
                output_root=root, iteration=1, preset="tiny", launcher=launcher, nodes=2, gpus_per_node=2,
                image="registry.example/mhubert-gpu:0.1.0", run_id="run-42", timeout_hours=timeout_hours,
                **arts)
    return train.python_func, call, ctl, fake, arts, out


def _jobs(api, launcher):
    _, group, version, plural, _ = KINDS[launcher]
    return api.list_namespaced_custom_object(group, version, "team-a", plural)["items"]


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
def test_complete(cluster, tmp_path, monkeypatch, capsys, launcher):
    script = ["created", "running", "complete"]
    fn, call, ctl, _, arts, out = _run(cluster, tmp_path, monkeypatch, launcher, script)
    model_url = fn(**call)
    assert ctl.steps_done == ["created", "running", "complete"]
    assert model_url == storage.join(out, "model")
    assert Path(arts["model"].path).read_text().strip() == model_url
    assert arts["model"].metadata["uri"] == model_url and arts["model"].metadata["iteration"] == 1
    assert json.loads(Path(arts["metrics"].path).read_text()) == {k: float(v) for k, v in RESULT.items()}
    assert "no loss curve" in Path(arts["loss_curve"].path).read_text()
    # what the component asked the cluster for
    job = ctl.created
    assert job["metadata"]["namespace"] == "team-a" and job["metadata"]["name"].startswith("mhubert-it1-")
    assert job["metadata"]["labels"]["mhubert/iteration"] == "1"
    deadline = job["spec"].get("activeDeadlineSeconds") or job["spec"]["runPolicy"]["activeDeadlineSeconds"]
    assert deadline == 3600                      # timeout_hours: the cluster stops a job nobody waits for
    if launcher == "trainjob":
        t = job["spec"]["trainer"]
        assert job["spec"]["runtimeRef"]["name"] == chart_runtime("team-a")["metadata"]["name"]
        assert (t["numNodes"], t["numProcPerNode"], t["image"]) == (2, 2, call["image"])
        argv, env = t["args"], t["env"]
    else:
        (c,) = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
        assert c["image"] == call["image"] and job["spec"]["nprocPerNode"] == "2"
        argv, env = c["command"], c["env"]
    assert argv[argv.index("--out") + 1] == out and argv[argv.index("--preset") + 1] == "tiny"
    assert {e["name"]: e.get("value") for e in env}["AWS_ENDPOINT_URL"] == "http://minio.kubeflow:9000"
    # node 0's log and the job's progress went into the task log; the job is gone (on-success)
    printed = capsys.readouterr().out
    assert all(line in printed for line in NODE0_LOG.decode().splitlines())
    assert f"{job['kind']} team-a/{job['metadata']['name']}: Running" in printed
    assert not _jobs(cluster, launcher)


@pytest.mark.parametrize("launcher,reason,message", [
    ("trainjob", "JobSetFailed", "jobset failed: job mhubert-it1-node-0 failed: BackoffLimitExceeded"),
    ("pytorchjob", "PyTorchJobFailed", "PyTorchJob is failed because 1 Master replica(s) failed."),
])
def test_failed(cluster, tmp_path, monkeypatch, launcher, reason, message):
    fn, call, ctl, _, arts, out = _run(cluster, tmp_path, monkeypatch, launcher,
                                       ["created", "running", f"failed:{reason}:{message}"])
    with pytest.raises(kube.JobFailed) as e:
        fn(**call)
    text = str(e.value)
    assert f"{reason}: {message}" in text and "team-a/mhubert-it1-" in text and "\n" not in text
    assert not Path(arts["model"].path).exists() and not storage.is_committed(out)
    (kept,) = _jobs(cluster, launcher)           # on-success: a failed job stays for inspection
    assert kept["metadata"]["name"] == ctl.created["metadata"]["name"]


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
def test_no_progress_until_the_timeout(cluster, tmp_path, monkeypatch, launcher):
    fn, call, ctl, fake, arts, _ = _run(cluster, tmp_path, monkeypatch, launcher, ["created"] + ["idle"] * 10,
                                        timeout_hours=90 / 3600)
    with pytest.raises(kube.JobTimeout, match=r"did not finish within 90 s \(last status: Created\)"):
        fn(**call)
    assert fake.now == 90                          # 30 s polls, on the component's own schedule
    assert not Path(arts["model"].path).exists()
