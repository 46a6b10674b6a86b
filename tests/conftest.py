"""Shared fixtures: a real S3 endpoint on 127.0.0.1 (moto's threaded server), small thread counts."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import torch
from helpers.s3proxy import s3_proxy  # noqa: F401  (fixture: fault-injecting proxy in front of moto)

torch.set_num_threads(min(2, torch.get_num_threads()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """Start moto's S3 server on loopback for the whole session; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                          "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket; yields its ``s3://name`` URL. s3fs caches listings, so clear them per test."""
    import s3fs

    name = f"test-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(name)
    s3fs.S3FileSystem.clear_instance_cache()
    yield f"s3://{name}"
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(params=["file", "s3"])
def storage_root(request, tmp_path):
    """Run a test once on local files and once on the S3 endpoint."""
    if request.param == "file":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/store"


SYNTH_LANGUAGES = ["en", "de", "fr", "es", "fi", "sw", "tr", "ru"]


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
    """A small espeak-ng corpus (8 languages x 2 datasets x ~4 utterances of 2-4 s) and its
    manifest: ``{"root": corpus root, "manifest": manifest.tsv URL}``."""
    from mhubert.corpus.manifest import build_manifest
    from mhubert.corpus.synth import synthesize

    base = tmp_path_factory.mktemp("synth_corpus")
    root, out = str(base / "corpus"), str(base / "manifest")
    synthesize(root, languages=SYNTH_LANGUAGES, utterances=4, seed=0, min_seconds=2.0,
               max_seconds=4.0, workers=2)
    build_manifest(out, root=root, progress=False)
    return {"root": root, "manifest": out + "/manifest.tsv"}
