"""The clustering sample on audio: α/β selection, the memory budget, streamed parts (file and S3),
reuse of a committed sample only with the same settings and inputs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.clustering import HeldAudio, make_corpus, ref_mfcc, sigterm_while_held

from mhubert import storage
from mhubert.artifacts import ClusteringSample, Manifest, StaleArtifact
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import sample as csample
from mhubert.features.spec import FeatureSpec


@pytest.fixture(params=["file", "s3"])
def corpus(request, tmp_path):
    if request.param == "file":
        root = str(tmp_path)
    else:
        root = request.getfixturevalue("s3_bucket")
    url = make_corpus(root)
    return root, url, ref_mfcc(Manifest.read(url))


def test_sample_respects_budget_and_streams_parts(corpus):
    root, murl, feats = corpus
    total = sum(len(f) for f in feats)
    budget_gb = total * 156 * 0.6 / 1e9
    out = storage.join(root, "clu", "sample")
    cfg = ClusteringConfig(memory_budget_gb=budget_gb)
    info = csample.build_sample(murl, out, FeatureSpec("mfcc"), cfg, shard_bytes=156 * 40,
                                progress=False)
    assert 0 < info["num_frames"] * 39 * 4 <= budget_gb * 1e9
    assert len(info["parts"]) > 1 and max(info["rows"]) <= 40 and sum(info["rows"]) == info["num_frames"]
    assert info["label_rate"] == 100 and info["features"]["label_rate"] == 100
    art = ClusteringSample(out)
    assert set(art.marker().files) == {*info["parts"], "segments.npy"}
    art.verify()                      # every part's size and sha256 as recorded
    x, rows = csample.load_sample(out)
    utt = csample.row_utterances(out)
    seg = np.load(io.BytesIO(storage.read_bytes(storage.join(out, "segments.npy"))))
    want = np.concatenate([feats[i] for i in seg[:, 0]])
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-4)
    assert len(utt) == len(x) and (rows == np.arange(len(x))).all()
    sub, srows = csample.load_sample(out, max_rows=17, seed=3)
    np.testing.assert_array_equal(sub, x[srows])
    # a budget larger than the corpus repeats groups (α/β up-sampling), still within the budget
    big = storage.join(root, "clu2", "sample")
    info2 = csample.build_sample(murl, big, FeatureSpec("mfcc"),
                                 ClusteringConfig(memory_budget_gb=budget_gb * 5), progress=False)
    assert info2["num_copies"] > info2["num_utterances"]
    assert total < info2["num_frames"] and info2["num_frames"] * 156 <= budget_gb * 5 * 1e9


def test_committed_sample_is_reused_only_with_the_same_settings(tmp_path, monkeypatch):
    murl = make_corpus(str(tmp_path))
    out = str(tmp_path / "clu" / "sample")
    cfg = ClusteringConfig(memory_budget_gb=1e-3)
    first = csample.build_sample(murl, out, FeatureSpec("mfcc"), cfg, progress=False)
    fp = ClusteringSample(out).fingerprint
    # K and the index settings do not change a sample: reused without computing anything
    monkeypatch.setattr(csample, "Featurizer", lambda *a: pytest.fail("recomputed the sample"))
    assert csample.build_sample(murl, out, FeatureSpec("mfcc"), ClusteringConfig(
        memory_budget_gb=1e-3, num_clusters=7, opq_niter=3), progress=False) == first
    # another budget: stops before any work, naming the setting
    with pytest.raises(StaleArtifact, match="memory_budget_gb"):
        csample.build_sample(murl, out, FeatureSpec("mfcc"), ClusteringConfig(memory_budget_gb=2e-3),
                             progress=False)
    # another manifest (same name, other content): stops too
    m = Manifest.read(murl)
    Manifest(m.root, m.entries[:-1]).write(murl)
    with pytest.raises(StaleArtifact, match="input manifest"):
        csample.build_sample(murl, out, FeatureSpec("mfcc"), cfg, progress=False)
    monkeypatch.undo()
    again = csample.build_sample(murl, out, FeatureSpec("mfcc"), cfg, progress=False, on_change="force")
    assert ClusteringSample(out).fingerprint != fp and again["num_utterances"] == 5


def test_select_upsamples_small_language():
    keys = [("en", "a")] * 90 + [("sw", "a")] * 10
    frames = [100] * 100
    idx = csample.select(keys, frames, 100, budget_frames=5000, alpha=0.7, beta=0.9, seed=0)
    share_sw = (idx >= 90).mean()
    p_sw = 0.1 ** 0.7 / (0.1 ** 0.7 + 0.9 ** 0.7)     # two-level formula on hours, α = 0.7
    assert len(idx) * 100 <= 5000
    assert abs(share_sw - p_sw) < 0.05 and share_sw > 0.15


def test_sigterm_stops_sampling_at_a_part_boundary_and_rerun_completes(tmp_path):
    """SIGTERM reaches ``mhubert cluster sample`` while it reads the third utterance (held back by the
    test's HTTP server until after the signal): exit 143, no part, no staging directory and no
    marker left; a rerun commits the sample."""
    murl = make_corpus(str(tmp_path))
    m = Manifest.read(murl)
    served = HeldAudio(m.root, m[2].path)
    http_manifest = str(tmp_path / "http.tsv")
    Manifest(served.url, m.entries).write(http_manifest)
    clu = str(tmp_path / "clu")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "mhubert", "cluster", "sample", "--manifest", http_manifest, "--out", clu,
           "--budget-gb", "0.001", "--batch-size", "1", "--quiet", "--preset", "tiny"]
    try:
        rc, err = sigterm_while_held(cmd, env, served)
        assert rc == 143, err
        assert "stopped by SIGTERM" in err
        sample_dir = tmp_path / "clu" / "sample"
        assert not ClusteringSample(str(sample_dir)).is_committed()
        assert sorted(os.listdir(sample_dir)) == []          # no part, no .staging-* left
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        served.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_utterances"] == 6
    ClusteringSample(str(tmp_path / "clu" / "sample")).verify()


def test_a_sample_larger_than_the_free_disk_stops_before_writing(tmp_path, monkeypatch):
    """A small corpus repeated up to a large budget (the base preset's 850 GB) must not fill the
    disk: the sample is refused before any part is written, naming the budget to lower."""
    import shutil

    murl = make_corpus(str(tmp_path))
    out = tmp_path / "clu" / "sample"
    real = shutil.disk_usage
    monkeypatch.setattr(csample.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    with pytest.raises(csample.BadInput, match=r"memory_budget_gb=0.001\) but .* has 0.0001 GB free"):
        csample.build_sample(murl, str(out), FeatureSpec("mfcc"), ClusteringConfig(memory_budget_gb=1e-3),
                             progress=False)
    assert not any(n.startswith("part-") for n in os.listdir(out))
    monkeypatch.undo()
    info = csample.build_sample(murl, str(out), FeatureSpec("mfcc"), ClusteringConfig(memory_budget_gb=1e-3),
                                progress=False)
    assert info["num_frames"] * 156 > 100_000   # it would not have fitted
