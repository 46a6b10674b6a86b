"""Every stage survives transient object-store faults: each runs as the public CLI
(``python -m mhubert ...``, as the pipeline's components do) with ``AWS_ENDPOINT_URL`` at the
fault-injecting proxy, while the proxy refuses connections for a moment, answers 503 SlowDown, resets
connections and stalls a request; the stage must exit 0 with a committed artifact whose bytes match
its marker. A tiny chain on S3: corpus manifest -> cluster sample -> fit -> assign -> merge -> train
(2 updates, checkpoints) -> model export (the publish step)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers.corpora import write_tone_corpus

from mhubert import storage
from mhubert.artifacts import ClusteringSample, Corpus, Index, Labels, Model, TrainRun
from mhubert.errors import BadInput

REPO = Path(__file__).resolve().parents[1]
TRAIN_SET = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
             "data.min_sample_size=16000", "data.num_workers=0", "train.log_interval=1",
             "train.max_update=2", "train.save_interval_updates=1"]


@pytest.fixture(scope="module")
def chain(s3_server):
    """A bucket with 6 short tone utterances (2 datasets x 3 languages) written straight to moto."""
    import s3fs

    bucket = f"stages-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}).mkdir(bucket)
    s3fs.S3FileSystem.clear_instance_cache()
    root = f"s3://{bucket}"
    write_tone_corpus(root)
    s3fs.S3FileSystem.clear_instance_cache()
    return {"root": root, "manifest": f"{root}/corpus/manifest.tsv", "clu": f"{root}/clu",
            "labels": f"{root}/labels", "train": f"{root}/train", "served": f"{root}/serving/model"}


def _cli(args: list[str], proxy) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.endpoint, MHUBERT_STORAGE_RETRY_BUDGET_S="30",
               MHUBERT_STORAGE_TIMEOUT_S="2", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "mhubert", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=240)


def _stage_args(stage: str, c: dict) -> list[str]:
    return {
        "manifest": ["corpus", "manifest", "--root", f"{c['root']}/audio", "--out", f"{c['root']}/corpus",
                     "--min-seconds", "1", "--workers", "2", "--quiet"],
        "sample": ["cluster", "sample", "--manifest", c["manifest"], "--out", c["clu"], "--budget-gb",
                   "0.001", "--preset", "tiny", "--quiet"],
        "fit": ["cluster", "fit", "--out", c["clu"], "--preset", "tiny", "--num-clusters", "5",
                "--mode", "exact", "--quiet"],
        "assign": ["cluster", "assign", "--manifest", c["manifest"], "--out", c["clu"], "--labels",
                   c["labels"], "--preset", "tiny", "--shard", "0", "--num-shards", "1", "--quiet"],
        "merge": ["cluster", "merge", "--labels", c["labels"], "--num-shards", "1", "--quiet"],
        "train": ["train", "run", "--preset", "tiny", "--manifest", c["manifest"], "--labels",
                  c["labels"], "--out", c["train"], *[a for s in TRAIN_SET for a in ("--set", s)]],
        "publish": ["model", "export", "--checkpoint", f"{c['train']}/checkpoints/step-00000002.pt",
                    "--out", c["served"]],
    }[stage]


def _done(stage: str, c: dict) -> bool:
    s3 = storage
    return {
        "manifest": lambda: Corpus(f"{c['root']}/corpus").is_committed(),
        "sample": lambda: ClusteringSample(f"{c['clu']}/sample").is_committed(),
        "fit": lambda: Index(c["clu"]).is_committed() or s3.exists(f"{c['clu']}/index.faiss"),
        "assign": lambda: Labels(c["labels"]).shard_done(0, 1) is not None,
        "merge": lambda: Labels(c["labels"]).is_committed(),
        "train": lambda: TrainRun(c["train"]).is_committed(),
        "publish": lambda: Model(c["served"]).is_committed(),
    }[stage]()


def _new_marker(art) -> bool:
    try:
        art.marker()
    except BadInput as e:
        if "not an mhubert marker" in str(e):
            return False
        raise
    return True


ORDER = ["manifest", "sample", "fit", "assign", "merge", "train", "publish"]


def _prepare(stage: str, c: dict, proxy) -> None:
    """Run the stages before ``stage`` that have not run yet (without faults)."""
    for before in ORDER[:ORDER.index(stage)]:
        if not _done(before, c):
            r = _cli(_stage_args(before, c), proxy)
            assert r.returncode == 0, f"{before} failed before the test: {r.stderr[-2000:]}"


def _check_committed(stage: str, c: dict) -> None:
    arts = {
        "manifest": [Corpus(f"{c['root']}/corpus")],
        "sample": [ClusteringSample(f"{c['clu']}/sample")],
        "fit": [Index(c["clu"])] if Index(c["clu"]).is_committed() else [],
        "assign": [],
        "merge": [Labels(c["labels"])],
        "train": [TrainRun(c["train"]), TrainRun(c["train"]).model],
        "publish": [Model(c["served"])],
    }[stage]
    for art in arts:
        assert art.is_committed()
        if _new_marker(art):  # stages still writing the old free-form _SUCCESS are checked below
            art.verify()      # every file present with the size and sha256 its marker lists
    if stage == "fit":
        assert storage.exists(f"{c['clu']}/index.faiss")
    if stage == "assign":
        flat, lengths = Labels(c["labels"]).read_shard(0, 1)
        assert len(lengths) == 6 and flat.size == int(lengths.sum()) > 0
    if stage == "train":
        latest = storage.read_text(f"{c['train']}/checkpoints/latest").strip()
        assert latest.endswith("step-00000002.pt") and storage.exists(
            f"{c['train']}/checkpoints/{storage.basename(latest)}")


@pytest.mark.parametrize("stage", ORDER)
def test_stage_survives_transient_storage_faults(stage, chain, s3_proxy):
    _prepare(stage, chain, s3_proxy)
    s3_proxy.reset_counters()
    # one short outage, then a steady drizzle of throttling, resets and one stalled request
    rules = [s3_proxy.inject("refuse", 1, skip=2, outage_s=1.0),
             s3_proxy.inject("stall", 1, skip=5, stall_s=4),
             s3_proxy.inject("503", None, every=4),
             s3_proxy.inject("reset", None, every=7)]
    try:
        r = _cli(_stage_args(stage, chain), s3_proxy)
    finally:
        for rule in rules:
            s3_proxy.remove(rule)
    if r.returncode:
        Path("/tmp/rchain/last.err").write_text(r.stderr)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert s3_proxy.injected["503"] > 0 and s3_proxy.injected["refuse"] == 1
    assert sum(s3_proxy.injected.values()) >= 3
    assert _done(stage, chain)
    _check_committed(stage, chain)


def test_stage_fails_with_one_line_naming_the_url_when_storage_stays_down(chain, s3_proxy):
    s3_proxy.down()
    env_budget = ["--min-seconds", "1", "--quiet"]
    r = subprocess.run([sys.executable, "-m", "mhubert", "corpus", "manifest", "--root",
                        f"{chain['root']}/audio", "--out", f"{chain['root']}/corpus-down", *env_budget],
                       cwd=REPO, text=True, capture_output=True, timeout=120,
                       env=dict(os.environ, AWS_ENDPOINT_URL=s3_proxy.endpoint,
                                MHUBERT_STORAGE_RETRY_BUDGET_S="1", MHUBERT_STORAGE_TIMEOUT_S="1"))
    assert s3_proxy.injected["refuse"] == 1
    assert r.returncode != 0 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    bucket = chain["root"].removeprefix("s3://")
    assert errors and "storage unavailable" in errors[-1] and bucket in errors[-1]
    assert s3_proxy.endpoint in errors[-1]
