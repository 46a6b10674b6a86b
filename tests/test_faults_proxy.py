"""The fault-injecting proxy itself: each fault looks to botocore (retries off) the way the real thing
does, it forwards everything else unchanged, and it counts what it injected."""

from __future__ import annotations

import uuid

import boto3
import botocore.config
import botocore.exceptions
import pytest
from helpers.s3proxy import S3Proxy


def _client(endpoint: str, read_timeout: float = 5.0):
    cfg = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1},
                                 connect_timeout=2, read_timeout=read_timeout)
    return boto3.client("s3", endpoint_url=endpoint, config=cfg)


@pytest.fixture
def proxied(s3_server):
    with S3Proxy(s3_server) as proxy:
        s3 = _client(proxy.endpoint)
        bucket = f"px-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        yield proxy, s3, bucket


def test_forwards_unchanged(proxied):
    proxy, s3, bucket = proxied
    body = bytes(range(256)) * 1000
    s3.put_object(Bucket=bucket, Key="a/b.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="a/b.bin")["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b.bin"]
    assert proxy.ops["put"] == 1 and proxy.ops["get"] == 1 and proxy.ops["list"] == 1
    assert sum(proxy.injected.values()) == 0


@pytest.mark.parametrize("fault,code", [("500", "InternalError"), ("503", "SlowDown")])
def test_error_answers_parse_as_s3_errors(proxied, fault, code):
    proxy, s3, bucket = proxied
    proxy.inject(fault, 1, match="put")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == int(fault)
    assert proxy.injected[fault] == 1
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")  # the schedule is spent


def test_reset_mid_body_never_reaches_the_server(proxied):
    proxy, s3, bucket = proxied
    proxy.inject("reset", 1, match="put")
    with pytest.raises((botocore.exceptions.ConnectionClosedError,
                        botocore.exceptions.EndpointConnectionError)):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    assert proxy.injected["reset"] == 1
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_reset_after_is_applied_but_unanswered(proxied):
    proxy, s3, bucket = proxied
    proxy.inject("reset_after", 1, match="put")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"applied")
    assert proxy.injected["reset_after"] == 1
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"applied"


def test_reset_mid_response_truncates_the_body(proxied):
    proxy, s3, bucket = proxied
    s3.put_object(Bucket=bucket, Key="k", Body=b"z" * 50_000)
    proxy.inject("reset_mid_response", 1, match="get")
    with pytest.raises((botocore.exceptions.ResponseStreamingError,
                        botocore.exceptions.IncompleteReadError)):
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert proxy.injected["reset_mid_response"] == 1


def test_stall_hits_the_client_read_timeout(s3_server):
    with S3Proxy(s3_server) as proxy:
        s3 = _client(proxy.endpoint, read_timeout=0.5)
        proxy.inject("stall", 1, stall_s=5)
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            s3.list_buckets()
        assert proxy.injected["stall"] == 1


def test_outage_refuses_connections_then_recovers(proxied):
    proxy, s3, bucket = proxied
    proxy.down()
    fresh = _client(proxy.endpoint)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        fresh.head_bucket(Bucket=bucket)
    proxy.up()
    fresh.head_bucket(Bucket=bucket)
    assert proxy.injected["refuse"] == 1


def test_schedule_every_and_skip_and_window(proxied):
    proxy, s3, bucket = proxied
    rule = proxy.inject("503", 2, match="put", skip=1, every=2)
    outcomes = []
    for i in range(6):
        try:
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
            outcomes.append("ok")
        except botocore.exceptions.ClientError:
            outcomes.append("503")
    assert outcomes == ["ok", "503", "ok", "503", "ok", "ok"]
    assert rule.fired == 2 and proxy.injected["503"] == 2
    with proxy.window("500", match="get", key=r"/k2$"):
        with pytest.raises(botocore.exceptions.ClientError):
            s3.get_object(Bucket=bucket, Key="k2")
        s3.get_object(Bucket=bucket, Key="k0")
    s3.get_object(Bucket=bucket, Key="k2")
    assert proxy.injected["500"] == 1


def test_only_loopback_upstreams():
    with pytest.raises(ValueError, match="loopback"):
        S3Proxy("http://192.0.2.1:9000")
