"""The run-objects API: markers list every file with its size and sha256, nested artifacts are
not repeated, readers detect changed bytes, and the layout puts each object in one place."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mhubert import storage
from mhubert.artifacts import (
    CorruptArtifact,
    Labels,
    LidHead,
    RunLayout,
    ServingBundle,
    TrainRun,
    fingerprint,
)
from mhubert.errors import BadInput


def test_commit_lists_files_with_sha256_and_skips_nested(storage_root):
    run = TrainRun(storage.join(storage_root, "iter1", "train"))
    run.write_text("log.jsonl", '{"step": 1}\n')
    storage.atomic_write(run.path("loss.png"), b"\x89PNG fake")          # written without a record
    storage.atomic_write(run.path("checkpoints", "step-00000001.pt"), b"ckpt")   # excluded
    storage.atomic_write(run.path("model", "config.json"), b"{}")
    storage.write_marker(run.path("model"))                                 # a nested artifact
    m = run.commit({"step": 1}, settings={"max_update": 1}, inputs={"labels": "abc"})
    assert sorted(m.files) == ["log.jsonl", "loss.png"]
    assert m.files["loss.png"].sha256 == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert m.files["log.jsonl"].size == len('{"step": 1}\n')
    again = TrainRun(run.url)
    assert again.is_committed() and again.info == {"step": 1}
    assert again.fingerprint == fingerprint("train", {"max_update": 1}, {"labels": "abc"})
    again.verify()


def test_fingerprint_changes_with_settings_and_inputs():
    a = fingerprint("train", {"max_update": 50}, {"labels": "x"})
    assert a != fingerprint("train", {"max_update": 100}, {"labels": "x"})
    assert a != fingerprint("train", {"max_update": 50}, {"labels": "y"})
    assert a == fingerprint("train", {"max_update": 50}, {"labels": "x"})


def test_flipped_byte_is_named(storage_root):
    lab = Labels(storage.join(storage_root, "labels"))
    lab.write_bytes("labels.npy", _npy(np.arange(6, dtype=np.uint16)))
    lab.write_bytes("offsets.npy", _npy(np.array([0, 2, 6], dtype=np.int64)))
    lab.write_text("dict.km.txt", "0 1\n")
    lab.commit({"label_rate": 50, "num_clusters": 6})
    flat, offsets = Labels(lab.url).read(verify=True)
    assert flat.tolist() == list(range(6)) and offsets.tolist() == [0, 2, 6]
    data = bytearray(storage.read_bytes(lab.path("labels.npy")))
    data[-1] ^= 0xFF
    storage.atomic_write(lab.path("labels.npy"), bytes(data))
    with pytest.raises(CorruptArtifact, match="labels.npy"):
        Labels(lab.url).read(verify=True)
    storage.atomic_write(lab.path("offsets.npy"), b"short")
    with pytest.raises(CorruptArtifact, match="offsets.npy.*bytes"):
        Labels(lab.url).verify(digest=False)


def test_uncommitted_and_wrong_kind_are_clear(tmp_path):
    lab = Labels(str(tmp_path / "nolabels"))
    with pytest.raises(BadInput, match="no committed labels.*cluster merge"):
        lab.read()
    head = LidHead(str(tmp_path / "lid"))
    head.write_bytes("head.pt", b"x")
    head.write_json("labels.json", ["en"])
    head.commit()
    with pytest.raises(BadInput, match="holds a lid-head artifact, not a labels"):
        Labels(head.url).read()
    with pytest.raises(BadInput, match="missing registry.json"):
        ServingBundle(str(tmp_path / "serving")).commit()


def test_layout_has_one_place_per_object():
    r = RunLayout("s3://b/run/")
    it = r.iteration(2)
    assert r.corpus.manifest_url == "s3://b/run/corpus/manifest.tsv"
    assert it.clustering.sample.url == "s3://b/run/iter2/clustering/sample"
    assert it.clustering.index.index_url == "s3://b/run/iter2/clustering/index.faiss"
    assert it.labels.url == "s3://b/run/iter2/labels"
    assert it.train.model.url == "s3://b/run/iter2/train/model"
    assert it.train.checkpoint_url(200) == "s3://b/run/iter2/train/checkpoints/step-00000200.pt"
    assert it.eval.lid.url == "s3://b/run/iter2/eval/lid"
    assert r.serving.model.url == "s3://b/run/serving/model"
    with pytest.raises(BadInput, match="iteration must be one of"):
        r.iteration(4)


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_decide_reuses_same_stops_on_different_and_forces(tmp_path):
    from mhubert.artifacts import StaleArtifact, decide

    run = TrainRun(str(tmp_path / "train"))
    settings = {"train": {"max_update": 50, "lr": 0.005}}
    assert decide(run, settings, {"labels": "L1"}) == "compute"
    run.write_text("log.jsonl", "")
    run.commit({"step": 50}, settings=settings, inputs={"labels": "L1"})
    assert decide(run, settings, {"labels": "L1"}) == "reuse"
    more = {"train": {"max_update": 100, "lr": 0.005}}
    with pytest.raises(StaleArtifact, match=r"train.max_update: 50 -> 100.*--resume.*--force"):
        decide(run, more, {"labels": "L1"}, resumable=True)
    with pytest.raises(StaleArtifact, match=r"input labels: \"L1\" -> \"L2\""):
        decide(run, settings, {"labels": "L2"})
    assert decide(run, more, {"labels": "L1"}, on_change="resume", resumable=True) == "resume"
    assert not run.is_committed()
    run.commit({"step": 50}, settings=settings, inputs={"labels": "L1"})
    assert decide(run, more, {"labels": "L1"}, on_change="force") == "compute"
    assert not run.is_committed()
