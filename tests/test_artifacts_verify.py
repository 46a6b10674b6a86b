"""Verified artifacts: readers check the sizes and sha256 the markers list before using the bytes.
A flipped byte in a label shard, the merged labels, a faiss index and a checkpoint gives a clear
error naming the file, instead of wrong labels or a crash deep inside faiss or torch."""

from __future__ import annotations

import io

import faiss
import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mhubert import storage
from mhubert.artifacts import CorruptArtifact, Index, Labels, LidHead, Model, dictionary_text
from mhubert.errors import BadInput


def _flip(url: str, at: float = 0.5) -> None:
    """Flip one bit of the byte at relative position ``at``, behind the artifact API's back."""
    fs, path = storage.get_fs(url)
    data = bytearray(fs.cat_file(path))
    i = min(len(data) - 1, int(len(data) * at))
    data[i] ^= 0x01
    fs.pipe_file(path, bytes(data))
    fs.invalidate_cache()


def _truncate(url: str, drop: int = 8) -> None:
    fs, path = storage.get_fs(url)
    data = fs.cat_file(path)
    fs.pipe_file(path, data[:-drop])
    fs.invalidate_cache()


def _npy(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _merged_labels(root: str) -> Labels:
    lab = Labels(storage.join(root, "labels"))
    rng = np.random.default_rng(0)
    flat = rng.integers(0, 7, 5000).astype(np.uint16)
    lab.write_bytes("labels.npy", _npy(flat))
    lab.write_bytes("offsets.npy", _npy(np.array([0, 1200, 3100, 5000], np.int64)))
    lab.write_text("dict.km.txt", dictionary_text(7))
    lab.commit({"label_rate": 100, "num_clusters": 7, "num_utterances": 3, "num_frames": 5000})
    return lab


def test_flipped_label_shard_is_named(storage_root):
    lab = Labels(storage.join(storage_root, "labels"))
    utts = [np.arange(400, dtype=np.uint16) % 9, np.arange(300, dtype=np.uint16) % 5]
    lab.write_shard(0, 2, utts, {"num_utterances": 2})
    flat, lengths = lab.read_shard(0, 2)
    assert lengths.tolist() == [400, 300] and flat.size == 700
    url = lab.shard_url(0, 2, ".npz")
    _flip(url, 0.6)
    with pytest.raises(CorruptArtifact) as e:
        lab.read_shard(0, 2)
    assert url in str(e.value) and "\n" not in str(e.value)


def test_flipped_merged_labels_are_named_not_used(storage_root):
    lab = _merged_labels(storage_root)
    good, _ = lab.read()
    good = np.array(good)
    _flip(lab.path("labels.npy"), 0.7)
    unchecked, _ = Labels(lab.url).read(verify=False)
    assert not np.array_equal(np.asarray(unchecked), good)  # the flip would silently change labels
    with pytest.raises(CorruptArtifact, match=r"labels\.npy does not match the sha256"):
        Labels(lab.url).read()


def test_truncated_offsets_are_named_by_size(storage_root):
    lab = _merged_labels(storage_root)
    _truncate(lab.path("offsets.npy"))
    with pytest.raises(CorruptArtifact, match=r"offsets\.npy has \d+ bytes, its marker recorded"):
        Labels(lab.url).read()


def test_flipped_faiss_index_is_named(storage_root, tmp_path):
    rng = np.random.default_rng(1)
    centroids = rng.standard_normal((16, 8)).astype(np.float32)
    flat = faiss.IndexFlatL2(8)
    flat.add(centroids)
    idx = Index(storage.join(storage_root, "clu"))
    idx.write_bytes(Index.INDEX, faiss.serialize_index(flat).tobytes())
    idx.write_bytes(Index.CENTROIDS, _npy(centroids))
    idx.commit({"num_clusters": 16})
    path = Index(idx.url).fetch(Index.INDEX, str(tmp_path / "ok.faiss"))
    assert faiss.read_index(path).ntotal == 16
    _flip(idx.index_url, 0.8)  # inside the vectors: faiss would load it and answer wrong labels
    with pytest.raises(CorruptArtifact) as e:
        Index(idx.url).fetch(Index.INDEX, str(tmp_path / "bad.faiss"))
    assert idx.index_url in str(e.value)
    with pytest.raises(CorruptArtifact, match="index.faiss"):
        Index(idx.url).read_bytes(Index.INDEX)


def test_flipped_torch_checkpoint_is_named(storage_root, tmp_path):
    head = LidHead(storage.join(storage_root, "lid"))
    buf = io.BytesIO()
    torch.save({"weight": torch.arange(4096, dtype=torch.float32).reshape(64, 64)}, buf)
    head.write_bytes(LidHead.HEAD, buf.getvalue())
    head.write_json(LidHead.LABELS, ["en", "de"])
    head.commit({"num_languages": 2})
    _flip(head.path(LidHead.HEAD), 0.5)
    with pytest.raises(CorruptArtifact, match=r"head\.pt does not match the sha256"):
        LidHead(head.url).read_bytes(LidHead.HEAD)
    with pytest.raises(CorruptArtifact, match=r"head\.pt"):
        LidHead(head.url).fetch(LidHead.HEAD, str(tmp_path / "head.pt"))


def test_flipped_safetensors_weights_are_named(storage_root):
    model = Model(storage.join(storage_root, "model"))
    weights = {"w": torch.linspace(-1, 1, 2048)}
    model.write_json("config.json", {"model_type": "hubert"})
    model.write_bytes("model.safetensors", st_save(weights))
    model.commit({"parameters": 2048})
    _flip(model.path("model.safetensors"), 0.9)
    raw = storage.read_bytes(model.path("model.safetensors"))
    assert not torch.equal(st_load(raw)["w"], weights["w"])  # loads fine, with a wrong weight
    with pytest.raises(CorruptArtifact, match=r"model\.safetensors does not match"):
        Model(model.url).verify()
    with pytest.raises(CorruptArtifact, match=r"model\.safetensors"):
        Model(model.url).read_bytes("model.safetensors")


def test_uncommitted_and_rewritten_artifacts(storage_root):
    lab = Labels(storage.join(storage_root, "labels"))
    lab.write_bytes("labels.npy", _npy(np.zeros(3, np.uint16)))
    assert lab.read_bytes("labels.npy")  # nothing to check against before the commit
    with pytest.raises(BadInput, match="no committed labels"):
        Labels(lab.url).read_bytes("labels.npy", verify=True)  # required: there must be a marker
    lab = _merged_labels(storage_root)
    reader = Labels(lab.url)
    assert reader.read_bytes("dict.km.txt") == dictionary_text(7).encode()
    # recommitted with new bytes after the reader cached the marker: the reader re-reads the marker
    lab.uncommit()
    lab.write_text("dict.km.txt", dictionary_text(9))
    lab.commit({"label_rate": 100, "num_clusters": 9, "num_utterances": 3, "num_frames": 5000})
    assert reader.read_bytes("dict.km.txt") == dictionary_text(9).encode()


def test_verify_through_the_faulty_proxy(s3_proxy, s3_bucket):
    """Sizes and digests read through a flaky endpoint still match; a flipped byte is still named."""
    lab = _merged_labels(s3_bucket)
    s3_proxy.inject("503", None, every=3)
    s3_proxy.inject("reset_mid_response", 2, match="get")
    flat, offsets = Labels(lab.url).read()
    assert flat.size == 5000 and offsets.tolist() == [0, 1200, 3100, 5000]
    Labels(lab.url).verify()
    assert s3_proxy.injected["503"] > 0 and s3_proxy.injected["reset_mid_response"] > 0
    s3_proxy.clear()
    _flip(lab.path("offsets.npy"), 0.99)
    with pytest.raises(CorruptArtifact, match=r"offsets\.npy"):
        Labels(lab.url).read()
