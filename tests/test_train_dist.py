"""The trainer under torchrun (2 processes, gloo): replicas stay identical, and a SIGKILLed rank is
recovered by ``--max-restarts 1`` from the last checkpoint, ending where an uninterrupted run ends.

The clean run is launched the way Kubeflow Trainer's torch plugin launches a TrainJob's node: a bare
``torchrun -m mhubert.train ...`` whose topology comes only from ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from test_train_corpus import make_toy_corpus

from mhubert.artifacts import TrainRun
from mhubert.train import checkpoint as ckpt

pytestmark = pytest.mark.slow   # three torchrun launches (one restarting) of 2 processes each

SETS = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
        "data.min_sample_size=16000", "data.num_workers=1", "train.max_update=6",
        "train.warmup_updates=2", "train.save_interval_updates=3", "train.log_interval=2",
        "model.dropout=0.1", "model.layerdrop=0.2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(corpus: dict, out: str, extra_env: dict | None = None, restarts: int = 0
              ) -> subprocess.CompletedProcess:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    if restarts:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                  f"--max-restarts={restarts}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                  "--rdzv-id=mhubert-test"]
    else:
        # what the TrainJob's torch plugin gives each node (one node of two processes here)
        env.update(PET_NNODES="1", PET_NPROC_PER_NODE="2", PET_NODE_RANK="0", PET_MASTER_ADDR="127.0.0.1",
                   PET_MASTER_PORT=str(port))
        launch = [os.path.join(os.path.dirname(sys.executable), "torchrun")]
    cmd = [*launch, "-m", "mhubert.train", "--preset", "tiny", "--manifest", corpus["manifest"],
           "--labels", corpus["labels"], "--out", out]
    for s in SETS:
        cmd += ["--set", s]
    env.update(OMP_NUM_THREADS="1", **(extra_env or {}))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy")), n=12)


@pytest.fixture(scope="module")
def clean_run(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "run")
    proc = _torchrun(corpus, out)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


def test_two_ranks_end_with_identical_parameters(clean_run):
    info = TrainRun(clean_run).info
    assert info["world_size"] == 2 and info["step"] == 6
    digests = info["param_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    state = ckpt.load(ckpt.latest_url(clean_run))
    assert len(state["rng"]) == 2                                    # one RNG state per rank
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])


def test_a_killed_rank_recovers_and_a_sigterm_stops_cleanly_then_resumes(corpus, clean_run, tmp_path):
    """A SIGKILLed rank, then SIGTERM to torchrun (Kubernetes' preemption): both ranks stop after the
    same update with one checkpoint, and the run resumed from it ends as the uninterrupted one. The
    faults come from a test callback (tests/helpers/train_faults.py) the trainer loads by name."""
    out = str(tmp_path / "run")
    killed, termed = str(tmp_path / "killed-once"), str(tmp_path / "termed-once")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    faults = {"MHUBERT_TRAIN_CALLBACKS": "helpers.train_faults:Faults",
              "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]),
              "MHUBERT_TEST_KILL_AT_STEP": "5", "MHUBERT_TEST_KILL_MARKER": killed,
              "MHUBERT_TEST_TERM_AT_STEP": "4", "MHUBERT_TEST_TERM_MARKER": termed}
    # attempt 0: rank 1 is SIGKILLed after update 5; torchrun restarts both ranks from update 3;
    # attempt 1: after update 4 rank 1 sends SIGTERM to torchrun, which forwards it to both ranks
    proc = _torchrun(corpus, out, faults, restarts=1)
    assert os.path.exists(killed) and os.path.exists(termed), proc.stderr[-6000:]
    assert "resumed from" in proc.stderr and "step-00000003.pt" in proc.stderr
    assert proc.stderr.count("stop requested (SIGTERM)") == 2, proc.stderr[-6000:]  # both ranks
    assert "every rank stops after update 4" in proc.stderr
    assert not TrainRun(out).is_committed()
    assert ckpt.latest_url(out).endswith("step-00000004.pt"), proc.stderr[-6000:]
    assert ckpt.load(ckpt.latest_url(out))["step"] == 4
    # the relaunch resumes from the preemption checkpoint and ends as the uninterrupted run
    proc = _torchrun(corpus, out)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "step-00000004.pt (update 4" in proc.stderr
    info = TrainRun(out).info
    assert info["param_sha256"][0] == info["param_sha256"][1]
    a, b = ckpt.load(ckpt.latest_url(clean_run)), ckpt.load(ckpt.latest_url(out))
    assert a["position"] == b["position"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
