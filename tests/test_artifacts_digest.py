"""What identifies an input of a stage's fingerprint (``content_digest``, the LID probe's
``model_identity``): the bytes, checked against hashlib, not the producer's settings. Two models of
one config trained apart have the same ``Model`` fingerprint (it is made of the config) and must
still count as different inputs, so that evaluate, publish and the LID head never reuse a result
of the other model."""

from __future__ import annotations

import hashlib
import os

import torch

from mhubert import storage
from mhubert.artifacts import Artifact, Model, content_digest
from mhubert.lid.features import model_identity
from mhubert.model import HubertConfig, HubertModel, save_hf


def _model(path: str, seed: int) -> Model:
    torch.manual_seed(seed)
    return save_hf(HubertModel(HubertConfig.preset("tiny")), path)


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_retrained_model_of_one_config_is_another_input(tmp_path):
    a, b = _model(str(tmp_path / "a"), 0), _model(str(tmp_path / "b"), 1)
    assert a.fingerprint == b.fingerprint  # the config's: not enough to tell them apart
    assert content_digest(a.url) != content_digest(b.url)
    assert content_digest(a.url) == content_digest(a.url)
    assert model_identity(a.url) == _sha(a.path("model.safetensors"))
    assert model_identity(b.url) == _sha(b.path("model.safetensors")) != model_identity(a.url)


def test_files_are_their_sha256_recorded_or_read(tmp_path):
    art = Artifact(str(tmp_path / "art"))
    art.write_bytes("x.bin", b"payload")
    art.commit({}, settings={"k": 1})
    assert content_digest(art.path("x.bin")) == hashlib.sha256(b"payload").hexdigest()
    plain = str(tmp_path / "plain.tsv")
    storage.atomic_write_text(plain, "root\n")
    assert content_digest(plain) == hashlib.sha256(b"root\n").hexdigest()
    # an uncommitted folder: its files' bytes, so a changed file is another input
    d = tmp_path / "loose"
    d.mkdir()
    (d / "f").write_bytes(b"1")
    before = content_digest(str(d))
    (d / "f").write_bytes(b"2")
    assert content_digest(str(d)) != before
    os.remove(d / "f")
