"""``make images-test``: run each built image once, as a cluster would, and check what it answers.

- API image: ``mhubert serve`` on a mounted random tiny model and LID head, read-only root filesystem,
  ``/tmp`` a tmpfs, on 127.0.0.1 (host network); checks ``/v2/health/ready``, one ``/v1/embeddings``
  call (the dimension and frame count the model implies), one ``/v1/lid`` call, that the server runs
  as uid 10001, and that the root filesystem refuses writes.
- CPU image: the prepare component as KFP runs it (kfp.local's DockerRunner, through podman's Docker API
  where podman is the CLI) on a tone corpus in the mounted pipeline root, as uid 10001 without a network;
  the committed corpus is read back here with the library's own reader. Then torch, faiss and a forward
  pass of the tiny model inside the image.
- GPU image (when built): torch, faiss (GPU count, 0 without a GPU), a CPU forward pass, the image's
  command (the trainer's ``--help``) and the TrainJob's command (``torchrun -m mhubert.train``) under the
  torch plugin's ``PET_*`` environment.

Usage: ``python scripts/images_test.py [cpu] [gpu] [api]`` (default: every image that exists). The
container CLI is podman (or ``CONTAINER_CLI``). Not part of ``make test``: it needs built images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import soundfile as sf

from mhubert import images
from mhubert.artifacts import RunLayout
from mhubert.constants import SAMPLE_RATE
from mhubert.jobs.trainjob import COMMAND as TRAINJOB_COMMAND

CLI = os.environ.get("CONTAINER_CLI") or ("podman" if shutil.which("podman") else "docker")
UID = "10001"
READY_TIMEOUT_S = 300  # torch's import and the model load on 2 busy cores
FORWARD = ("import torch; from mhubert.model import hubert_tiny; m = hubert_tiny().eval(); "
           "h = m(torch.randn(1, 16000)); "
           "assert h.shape[1] == m.num_frames(16000) and bool(h.isfinite().all()); "
           "print('forward', tuple(h.shape), 'torch', torch.__version__)")


def cli(*args: str) -> list[str]:
    """The container CLI, with what a container sandbox needs (runc; the host's open-file limit)."""
    base = [CLI]
    if CLI == "podman" and shutil.which("runc"):
        base += ["--runtime", "runc"]
    return base + list(args)


def run_opts() -> list[str]:
    """podman's default open-file and process limits are above what a container sandbox may allow: the
    host's open-file limit, and at most 32768 processes (what `podman build` itself sets)."""
    import resource

    out = []
    limits = (("nofile", resource.RLIMIT_NOFILE, 1048576), ("nproc", resource.RLIMIT_NPROC, 32768))
    for name, limit, cap in limits:
        hard = resource.getrlimit(limit)[1]
        hard = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        out += ["--ulimit", f"{name}={hard}:{hard}"]
    return out


def sh(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SystemExit(f"images-test: `{' '.join(args)}` exited {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def exists(image: str) -> bool:
    return subprocess.run(cli("image", "inspect", image), capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav(seconds: float, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SAMPLE_RATE, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def tiny_assets(root: str) -> tuple[str, str, int, int]:
    """A random tiny encoder (trainer .pt) and LID head: (model path, LID dir, dim, frames for 2 s)."""
    import torch

    from mhubert.lid.head import LidClassifier, LidHeadConfig, save_head
    from mhubert.model import hubert_tiny
    from mhubert.model.convert import save_checkpoint_model

    torch.manual_seed(0)
    model = hubert_tiny().eval()
    save_checkpoint_model(model, os.path.join(root, "model.pt"))
    head = LidClassifier(LidHeadConfig(num_layers=model.cfg.num_layers, dim=model.cfg.embed_dim,
                                       num_classes=3))
    save_head(head, ["en", "fr", "sw"], os.path.join(root, "lid"))
    with torch.no_grad():
        frames = model(torch.zeros(1, 2 * SAMPLE_RATE)).shape[1]
    return "/models/model.pt", "/models/lid", model.cfg.embed_dim, frames


def readable(path: str) -> None:
    """The containers run as uid 10001: let them read (and, for outputs, write) the mounted dirs."""
    for d, _dirs, files in os.walk(path):
        os.chmod(d, 0o777)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666)


def http(url: str, data: bytes | None = None, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "audio/wav"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_api(work: str) -> None:
    image = images.API_IMAGE
    models = os.path.join(work, "models")
    os.makedirs(models)
    model, lid, dim, frames = tiny_assets(models)
    readable(models)
    port = free_port()
    name = f"mhubert-images-test-api-{os.getpid()}"
    sh(*cli("run", "-d", "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
            *run_opts(), "-v", f"{models}:/models:ro", "-e", "MHUBERT_HOST=127.0.0.1",
            "-e", f"MHUBERT_PORT={port}", image, "mhubert", "serve", "--model", model, "--lid", lid))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        status = None
        while time.monotonic() < deadline:
            try:
                status, body = http(f"{base}/v2/health/ready", timeout=5)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if sh(*cli("container", "exists", name), check=False).returncode != 0:
                raise SystemExit("images-test: the API container exited before it was ready")
            time.sleep(1)  # polling a starting server (bounded by READY_TIMEOUT_S)
        if status != 200:
            logs = sh(*cli("logs", name), check=False)
            raise SystemExit(f"images-test: {image} not ready after {READY_TIMEOUT_S}s:\n"
                             f"{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        status, emb = http(f"{base}/v1/embeddings", wav(2.0))
        assert status == 200, (status, emb)
        assert emb["dim"] == dim and len(emb["embeddings"]) == 1 and len(emb["embeddings"][0]) == dim, emb
        assert emb["num_frames"] == frames, (emb["num_frames"], frames)
        assert np.isfinite(np.asarray(emb["embeddings"])).all()
        status, out = http(f"{base}/v1/lid", wav(2.0, 330.0))
        assert status == 200, (status, out)
        uid = sh(*cli("exec", name, "id", "-u")).stdout.strip()
        assert uid == UID, f"the server runs as uid {uid}, not {UID}"
        write = sh(*cli("exec", name, "sh", "-c", "touch /opt/venv/x"), check=False)
        assert write.returncode != 0 and "Read-only" in write.stderr, write
        print(f"api: {image} ready, /v1/embeddings dim {emb['dim']} x {emb['num_frames']} frames, /v1/lid "
              f"{status}, uid {uid}, read-only root")
    finally:
        sh(*cli("stop", "-t", "10", name), check=False)


@contextlib.contextmanager
def docker_api(work: str):
    """A Docker Engine API for kfp.local's DockerRunner: podman's (``podman system service`` on a socket
    in ``work``, with runc, the sandbox's limits and the host's network namespace), or docker's own."""
    if CLI != "podman":
        yield
        return
    conf = os.path.join(work, "containers.conf")
    ulimits = ", ".join(f'"{a}"' for a in run_opts()[1::2])
    with open(conf, "w") as f:
        f.write(f'[containers]\ndefault_ulimits = [{ulimits}]\nnetns = "host"\n'
                + ('[engine]\nruntime = "runc"\n' if shutil.which("runc") else ""))
    sock = os.path.join(work, "podman.sock")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            env={**os.environ, "CONTAINERS_CONF": conf}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("images-test: `podman system service` did not start")
            time.sleep(0.2)  # waiting for the socket (bounded)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old


def test_cpu(work: str) -> None:
    """The prepare component as KFP runs it (kfp.local's DockerRunner: the component's own container
    command in the CPU image, no network), on a tone corpus under the mounted pipeline root."""
    from kfp import local

    image = images.CPU_IMAGE
    corpus, out = os.path.join(work, "corpus", "audio"), os.path.join(work, "run")
    for i in range(6):
        path = os.path.join(corpus, f"ds{i % 2}", ("en", "de", "fr")[i % 3], f"u{i}.wav")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(wav(2.0 + 0.25 * i, 200.0 + 90 * i))
    readable(work)
    from components.prepare import prepare

    assert prepare.component_spec.implementation.container.image == image
    with docker_api(work):
        # DockerRunner mounts the pipeline root at the same path; the exit status it reads back is not
        # reliable with podman (the container may be removed first), so the outputs are what is checked
        local.init(runner=local.DockerRunner(network_mode="none"), pipeline_root=work, raise_on_error=True)
        task = prepare(corpus_uri=corpus, output_root=out)
    layout = RunLayout(out).corpus
    assert layout.is_committed(), "the prepare component committed no corpus"
    stats = layout.stats()
    assert stats["total"]["utterances"] == 6, stats
    assert set(stats["languages"]) == {"en", "de", "fr"}, stats
    assert task.outputs["Output"] == layout.manifest_url, task.outputs
    owner = os.stat(os.path.join(out, "corpus")).st_uid
    assert str(owner) == UID, f"the corpus was written by uid {owner}, not {UID}"
    probe = sh(*cli("run", "--rm", "--network", "none", *run_opts(), image, "python", "-c",
                    "import faiss, torch, kfp, components.prepare; " + FORWARD))
    print(f"cpu: {image}: the prepare component imported 6 utterances "
          f"({stats['total']['hours'] * 3600:.1f} s) as uid {owner}; {probe.stdout.strip()}")


def test_gpu(work: str) -> None:
    image = images.GPU_IMAGE
    probe = sh(*cli("run", "--rm", "--network", "none", *run_opts(), image, "python", "-c",
                    "import faiss, torch; print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus(), "
                    "'cuda', torch.version.cuda); " + FORWARD))
    sh(*cli("run", "--rm", "--network", "none", *run_opts(), image))  # its CMD: the trainer's --help
    # the TrainJob's command under the torch plugin's environment (one node, one process)
    pet = {"PET_NNODES": "1", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1",
           "PET_MASTER_PORT": "29500"}
    env = [a for k, v in pet.items() for a in ("-e", f"{k}={v}")]
    job = sh(*cli("run", "--rm", "--network", "none", *run_opts(), *env, image, *TRAINJOB_COMMAND, "--help"))
    assert "--max-update" in job.stdout or "usage:" in job.stdout, job.stdout[-1000:]
    print(f"gpu: {image}: {' '.join(probe.stdout.split())}; `{' '.join(TRAINJOB_COMMAND)} --help` ran")


TESTS = {"api": test_api, "cpu": test_cpu, "gpu": test_gpu}
NAMES = {"api": images.API_IMAGE, "cpu": images.CPU_IMAGE, "gpu": images.GPU_IMAGE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("roles", nargs="*", help="cpu, gpu, api (default: those built)")
    args = ap.parse_args(argv)
    unknown = [r for r in args.roles if r not in TESTS]
    if unknown:
        print(f"images-test: unknown image role {unknown[0]} (cpu, gpu or api)", file=sys.stderr)
        return 2
    roles = args.roles or [r for r in TESTS if exists(NAMES[r])]
    if not roles:
        print("images-test: no image is built (make images)", file=sys.stderr)
        return 2
    for r in roles:
        if not exists(NAMES[r]):
            print(f"images-test: {NAMES[r]} is not built (make images)", file=sys.stderr)
            return 2
    for r in roles:
        with tempfile.TemporaryDirectory(prefix=f"mhubert-images-{r}-") as work:
            start = time.monotonic()
            TESTS[r](work)
            print(f"{r}: passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
