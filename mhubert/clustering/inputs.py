"""Fingerprints of a clustering stage's inputs that are not always committed artifacts of this run:
the manifest (a corpus's, or any manifest file: its bytes' sha256) and the model features come from
(a committed :class:`~mhubert.artifacts.Model`, a transformers directory, or a trainer ``.pt``)."""

from __future__ import annotations

import hashlib
import json

from mhubert import storage
from mhubert.artifacts import Model
from mhubert.artifacts import marker as mk
from mhubert.errors import BadInput
from mhubert.features.spec import FeatureSpec


def manifest_fingerprint(url: str) -> str:
    """sha256 of the manifest's bytes, read now (a corpus's marker could be older than its file)."""
    return mk.hash_url(url).sha256


def _recorded(art) -> dict[str, mk.FileRecord] | None:
    """The file records of a committed artifact's marker; None when it has none we can read (not
    committed, or committed by an older version with a free-form ``_SUCCESS``)."""
    if not art.is_committed():
        return None
    try:
        return art.marker().files
    except BadInput:
        return None


def _files_digest(records: dict[str, mk.FileRecord]) -> str:
    doc = {k: v.to_dict() for k, v in sorted(records.items())}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def model_fingerprint(url: str) -> str:
    """A digest of the model's files: a file's sha256, or the sha256 of a directory's file list
    (sizes and sha256s; from its marker when it is a committed Model)."""
    fs, path = storage.get_fs(url)
    if fs.isfile(path):
        return mk.hash_url(url).sha256
    rec = _recorded(Model(url))
    if rec:
        return _files_digest(rec)
    return _files_digest({rel: mk.hash_url(storage.join(url, rel)) for rel in mk.list_files(url)})


def feature_inputs(spec: FeatureSpec) -> dict[str, str | None]:
    """``{"model": fingerprint}`` for SSL features, nothing for MFCC."""
    return {"model": model_fingerprint(spec.model)} if spec.source == "hubert" and spec.model else {}
