"""The no-stale-results rule: reuse a committed artifact only when what produced it is the same.

Every stage calls :func:`decide` before it works: ``"reuse"`` when the artifact is committed with the
fingerprint of the stage's settings and inputs now, ``"compute"`` when there is nothing (or, with
``on_change="force"``, something different) to keep, ``"resume"`` when the caller asked to continue a
different artifact from its last checkpoint. A different committed artifact under the default
``on_change="stop"`` raises :class:`StaleArtifact` before any work, naming the settings that differ
and the two choices.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mhubert import storage
from mhubert.artifacts import marker as mk
from mhubert.artifacts.base import Artifact
from mhubert.artifacts.marker import fingerprint
from mhubert.errors import BadInput

ON_CHANGE = ("stop", "resume", "force")


class StaleArtifact(BadInput):
    """A committed artifact was produced by other settings or inputs than the ones given now."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every leaf that differs (sorted)."""
    a, b = _flat(old), _flat(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            out.append(f"{k}: {json.dumps(a.get(k, '<unset>'), default=str)} -> "
                       f"{json.dumps(b.get(k, '<unset>'), default=str)}")
    return out


def decide(art: Artifact, settings: dict[str, Any], inputs: dict[str, str | None] | None = None,
           on_change: str = "stop", resumable: bool = False) -> str:
    """``"reuse" | "compute" | "resume"`` for ``art`` given the stage's ``settings`` and ``inputs``
    (input artifacts' fingerprints). ``resumable``: the stage can continue a different artifact from
    its checkpoint (training), so ``--resume`` is offered."""
    if on_change not in ON_CHANGE:
        raise BadInput(f"on_change must be one of {', '.join(ON_CHANGE)}, got {on_change!r}")
    if not art.is_committed():
        return "compute"
    try:
        m = art.marker(refresh=True)
    except BadInput:
        m = None
    want = fingerprint(art.kind, settings, inputs)
    if m is not None and m.fingerprint == want:
        return "reuse"
    if on_change == "force":
        art.uncommit()
        return "compute"
    if on_change == "resume" and resumable:
        art.uncommit()
        return "resume"
    if m is None:
        diff = ["its marker was written by another version of mhubert"]
    else:
        diff = differences(m.settings, settings) + differences(
            {f"input {k}": v for k, v in m.inputs.items()},
            {f"input {k}": v for k, v in (inputs or {}).items()})
        diff = diff or [f"mhubert version: {m.version}"]
    shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    force = "--force (recompute it and what depends on it)"
    choices = f"--resume (continue it with the new settings) or {force}" if resumable else force
    raise StaleArtifact(f"{art.url} was produced with other settings ({shown}); pass {choices}, "
                        "or use another output root")


def content_digest(url: str) -> str:
    """What identifies the bytes at ``url``, as an input of another stage's fingerprint.

    A committed artifact directory: the sha256 of its marker's fingerprint and file records (sizes
    and sha256 of every file), so that a retrained model whose settings, and hence fingerprint, are
    the same still counts as another input. A file its directory's marker lists: the recorded
    sha256. Nothing is re-read in those cases; anything else is hashed (a file, or every file of an
    uncommitted directory)."""
    if storage.isdir(url):
        m = mk.read(url)
        if m is not None:
            doc = {"fingerprint": m.fingerprint,
                   "files": {k: v.to_dict() for k, v in sorted(m.files.items())}}
            return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        h = hashlib.sha256()
        for rel in mk.list_files(url):
            h.update(f"{rel}\t{mk.hash_url(storage.join(url, rel)).sha256}\n".encode())
        return h.hexdigest()
    try:
        rec = mk.read(storage.parent(url))
    except BadInput:
        rec = None
    name = storage.basename(url)
    if rec is not None and name in rec.files:
        return rec.files[name].sha256
    return mk.hash_url(url).sha256
