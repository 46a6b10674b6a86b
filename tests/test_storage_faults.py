"""Storage under object-store faults, through the fault-injecting proxy in front of moto: retries
with backoff inside the budget, a clear one-line error past it, and atomic writes that leave nothing
(or the old object) at the final key when cut at any point."""

from __future__ import annotations

import errno

import botocore.exceptions
import pytest

from mhubert import storage
from mhubert.errors import BadInput, StorageUnavailable

MiB = 2**20


def _payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


@pytest.mark.parametrize("fault", ["500", "503", "reset", "reset_after", "stall"])
def test_write_survives_transient_faults(s3_proxy, s3_bucket, fault):
    url = f"{s3_bucket}/w/{fault}.bin"
    times = 1 if fault == "stall" else 2  # a stall costs a read timeout
    s3_proxy.inject(fault, times, match="put", stall_s=5)
    storage.atomic_write(url, _payload(70_000))
    assert s3_proxy.injected[fault] == times
    assert storage.read_bytes(url) == _payload(70_000)


@pytest.mark.parametrize("fault", ["500", "503", "reset", "reset_mid_response", "stall"])
def test_read_survives_transient_faults(s3_proxy, s3_bucket, fault):
    url = f"{s3_bucket}/r/{fault}.bin"
    storage.atomic_write(url, _payload(200_000, 1))
    s3_proxy.inject(fault, 1 if fault == "stall" else 2, match="get", stall_s=5)
    assert storage.read_bytes(url) == _payload(200_000, 1)
    assert s3_proxy.injected[fault] >= 1


def test_listing_and_exists_survive_faults(s3_proxy, s3_bucket):
    storage.atomic_write_text(f"{s3_bucket}/d/a.txt", "a")
    storage.atomic_write_text(f"{s3_bucket}/d/b.txt", "b")
    s3_proxy.inject("503", 3, match=("list", "head"))
    assert storage.listdir(f"{s3_bucket}/d") == ["a.txt", "b.txt"]
    s3_proxy.inject("reset", 2, match="head")
    assert storage.exists(f"{s3_bucket}/d/a.txt")
    assert s3_proxy.injected["503"] + s3_proxy.injected["reset"] >= 2


@pytest.mark.parametrize("fault", ["reset", "503", "stall"])
def test_interrupted_write_leaves_nothing_then_retry_succeeds(s3_proxy, s3_bucket, monkeypatch, fault):
    monkeypatch.setenv(storage.RETRY_BUDGET_ENV, "1")
    monkeypatch.setenv(storage.TIMEOUT_ENV, "0.5")
    url = f"{s3_bucket}/atomic/{fault}.bin"
    with s3_proxy.window(fault, match="put", stall_s=2):
        with pytest.raises(StorageUnavailable) as e:
            storage.atomic_write(url, _payload(300_000))
    assert s3_proxy.injected[fault] > 0
    msg = str(e.value)
    assert url in msg and s3_proxy.endpoint in msg and "\n" not in msg
    assert not storage.exists(url)
    assert storage.listdir(f"{s3_bucket}/atomic") == []
    storage.atomic_write(url, _payload(300_000))
    assert storage.read_bytes(url) == _payload(300_000)


def test_interrupted_overwrite_keeps_the_old_object(s3_proxy, s3_bucket, monkeypatch):
    monkeypatch.setenv(storage.RETRY_BUDGET_ENV, "1")
    url = f"{s3_bucket}/over.json"
    storage.atomic_write_json(url, {"v": 1})
    with s3_proxy.window("reset", match="put"):
        with pytest.raises(StorageUnavailable):
            storage.atomic_write_json(url, {"v": 2, "pad": "x" * 10_000})
    assert s3_proxy.injected["reset"] > 0
    assert storage.read_json(url) == {"v": 1}


@pytest.mark.parametrize("step", ["upload_part", "complete_multipart"])
def test_multipart_write_cut_at_any_step_leaves_nothing(s3_proxy, s3_bucket, monkeypatch, step):
    monkeypatch.setattr(storage, "MULTIPART_CHUNK", 5 * MiB)  # S3's smallest part
    monkeypatch.setenv(storage.RETRY_BUDGET_ENV, "1")
    url = f"{s3_bucket}/big/{step}.bin"
    data = _payload(11 * MiB, 2)
    with s3_proxy.window("reset", match=step, every=1):
        with pytest.raises(StorageUnavailable):
            storage.atomic_write(url, data)
    assert s3_proxy.injected["reset"] > 0 and s3_proxy.ops["create_multipart"] > 0
    assert not storage.exists(url)
    s3_proxy.inject("503", 1, match=step)  # one more transient failure, then through
    storage.atomic_write(url, data)
    assert storage.read_bytes(url) == data
    assert s3_proxy.injected["503"] == 1


def test_outage_then_recovery(s3_proxy, s3_bucket):
    url = f"{s3_bucket}/outage.txt"
    storage.atomic_write_text(url, "before")
    s3_proxy.outage(1.5)
    storage.atomic_write_text(url, "after")   # retried until the endpoint is back
    assert storage.read_text(url) == "after"
    assert s3_proxy.injected["refuse"] == 1


def test_endpoint_down_past_budget_is_one_clear_line(s3_proxy, s3_bucket, monkeypatch):
    monkeypatch.setenv(storage.RETRY_BUDGET_ENV, "1")
    url = f"{s3_bucket}/gone/x.txt"
    s3_proxy.down()
    with pytest.raises(StorageUnavailable) as e:
        storage.read_text(url)
    msg = str(e.value)
    assert s3_proxy.injected["refuse"] == 1
    assert "\n" not in msg and url in msg and s3_proxy.endpoint in msg and "budget" in msg


def test_permanent_errors_are_not_retried(s3_proxy, s3_bucket):
    with pytest.raises(BadInput, match="not found"):
        storage.read_bytes(f"{s3_bucket}/missing.bin")
    assert s3_proxy.ops["get"] + s3_proxy.ops["head"] <= 2


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject")


@pytest.mark.parametrize("exc,transient", [
    (_client_error("SlowDown", 503), True),
    (_client_error("InternalError", 500), True),
    (_client_error("NoSuchKey", 404), False),
    (_client_error("AccessDenied", 403), False),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True),
    (OSError(errno.EIO, "An error occurred (SlowDown) when calling PutObject"), True),
    (FileNotFoundError("k"), False),
    (PermissionError("k"), False),
    (BadInput("bad"), False),
    (ValueError("bad"), False),
])
def test_is_transient(exc, transient):
    assert storage.is_transient(exc) is transient


def test_local_and_memory_writes_are_not_retried(tmp_path):
    url = str(tmp_path / "x" / "y.bin")
    storage.atomic_write(url, b"abc")
    assert storage.read_bytes(url) == b"abc"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["y.bin"]  # no temporary debris


def test_budget_env_is_validated(monkeypatch):
    monkeypatch.setenv(storage.RETRY_BUDGET_ENV, "soon")
    with pytest.raises(BadInput, match=storage.RETRY_BUDGET_ENV):
        storage.retry_budget_s()
