"""Storage: URLs, atomic writes and commit markers on local files and a real S3 endpoint."""

import pytest

from mhubert import storage
from mhubert.errors import BadInput


def test_roundtrip_and_listing(storage_root):
    url = storage.join(storage_root, "a", "b.json")
    storage.atomic_write_json(url, {"x": 1})
    assert storage.read_json(url) == {"x": 1}
    assert storage.listdir(storage.join(storage_root, "a")) == ["b.json"]
    assert storage.exists(url)


def test_failed_atomic_open_leaves_nothing(storage_root):
    url = storage.join(storage_root, "out.bin")
    with pytest.raises(RuntimeError):
        with storage.atomic_open(url) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert not storage.exists(url)
    # no temporary debris visible under a non-hidden name
    assert [n for n in storage.listdir(storage_root) if not n.startswith(".")] == []


def test_marker_commits_directory(storage_root):
    d = storage.join(storage_root, "labels")
    storage.atomic_write_text(storage.join(d, "part-0.km"), "1 2 3\n")
    assert not storage.is_committed(d)
    storage.write_marker(d, {"parts": 1})
    assert storage.is_committed(d)
    assert storage.read_json(storage.join(d, storage.SUCCESS)) == {"parts": 1}


def test_missing_file_is_clear_error(storage_root):
    with pytest.raises(BadInput, match="not found"):
        storage.read_bytes(storage.join(storage_root, "nope.txt"))


def test_memory_protocol():
    storage.atomic_write_text("memory://mhubert-test/x.txt", "hello")
    assert storage.read_text("memory://mhubert-test/x.txt") == "hello"


def test_parent_and_basename():
    assert storage.parent("s3://b/a/c.txt") == "s3://b/a"
    assert storage.basename("s3://b/a/c.txt") == "c.txt"
    assert storage.parent("/x/y/z") == "/x/y"
