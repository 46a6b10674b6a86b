"""Fingerprints of a clustering stage's inputs that are not always committed artifacts of this run:
the manifest (a corpus's, or any manifest file) and the model features come from (a committed
:class:`~mhubert.artifacts.Model`, a transformers directory, or a trainer ``.pt``)."""

from __future__ import annotations

import hashlib
import json

from mhubert import storage
from mhubert.artifacts import MANIFEST, Corpus, Model
from mhubert.artifacts import marker as mk
from mhubert.features.spec import FeatureSpec


def manifest_fingerprint(url: str) -> str:
    """sha256 of the manifest's bytes (read from its corpus's marker when it is committed)."""
    if storage.basename(url) == MANIFEST:
        corpus = Corpus(storage.parent(url))
        if corpus.is_committed():
            rec = corpus.marker().files.get(MANIFEST)
            if rec is not None:
                return rec.sha256
    return mk.hash_url(url).sha256


def _files_digest(records: dict[str, mk.FileRecord]) -> str:
    doc = {k: v.to_dict() for k, v in sorted(records.items())}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def model_fingerprint(url: str) -> str:
    """A digest of the model's files: a file's sha256, or the sha256 of a directory's file list
    (sizes and sha256s; from its marker when it is a committed Model)."""
    fs, path = storage.get_fs(url)
    if fs.isfile(path):
        return mk.hash_url(url).sha256
    model = Model(url)
    if model.is_committed():
        return _files_digest(model.marker().files)
    return _files_digest({rel: mk.hash_url(storage.join(url, rel)) for rel in mk.list_files(url)})


def feature_inputs(spec: FeatureSpec) -> dict[str, str | None]:
    """``{"model": fingerprint}`` for SSL features, nothing for MFCC."""
    return {"model": model_fingerprint(spec.model)} if spec.source == "hubert" and spec.model else {}
