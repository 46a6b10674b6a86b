"""Training checkpoints on any fsspec URL: verified, never half-written, resumable after corruption.

Layout inside a :class:`~mhubert.artifacts.TrainRun`::

    checkpoints/step-XXXXXXXX.pt        torch.save of the trainer's state
    checkpoints/step-XXXXXXXX.pt.json   {"name", "step", "size", "sha256", "fingerprint",
                                         "settings", "inputs"} of that file
    checkpoints/latest                  text: the file name of the newest complete checkpoint

A checkpoint is written atomically, then its record, then ``latest`` (also atomically): a crash or a
failed write at any point leaves ``latest`` on the previous complete checkpoint (whose record is
already there). On resume the
record's size and sha256 are checked against the bytes; a truncated or corrupt newest checkpoint is
reported in the log and the newest older one that verifies is used instead.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from typing import Any

import numpy as np
import torch

from mhubert import storage
from mhubert.artifacts import FileRecord, TrainRun
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

LATEST = TrainRun.LATEST
RECORD_SUFFIX = ".json"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    """``step-XXXXXXXX.pt`` (the name ``TrainRun.checkpoint_url`` uses)."""
    return f"step-{step:08d}.pt"


def to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


class CheckpointStore:
    """The checkpoints of one run: write, list, verify and pick the one to resume from."""

    def __init__(self, run: TrainRun | str):
        self.run = run if isinstance(run, TrainRun) else TrainRun(run)

    @property
    def url(self) -> str:
        return self.run.checkpoints_url

    def path(self, name: str) -> str:
        return storage.join(self.url, name)

    # -- writing ---------------------------------------------------------------------------------
    def write(self, step: int, data: bytes, meta: dict[str, Any] | None = None) -> str:
        """Publish ``data`` (a serialized state) as the checkpoint of ``step``: the file, its record
        (size, sha256 and ``meta``: the run's fingerprint, settings, inputs), then ``latest``. Any
        exception leaves ``latest`` where it was. Returns the file's URL."""
        name = checkpoint_name(step)
        rec = FileRecord.of_bytes(data)
        doc = {**(meta or {}), "name": name, "step": step, "size": rec.size, "sha256": rec.sha256}
        url = self.run.checkpoint_url(step)
        storage.atomic_write(url, data)
        storage.atomic_write_json(url + RECORD_SUFFIX, doc)
        storage.atomic_write_text(self.path(LATEST), name + "\n")
        return url

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
        return self.write(step, to_bytes(state), meta)

    def prune(self, keep: int) -> None:
        """Remove all but the newest ``keep`` checkpoints (never the one ``latest`` names)."""
        if keep < 1:
            return
        latest = self._pointer()
        for step in self.steps()[:-keep]:
            name = checkpoint_name(step)
            if latest and latest.get("name") == name:
                continue
            for url in (self.path(name), self.path(name) + RECORD_SUFFIX):
                if storage.exists(url):
                    storage.remove(url)

    # -- reading ---------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """Steps of the checkpoint files present, ascending."""
        if not storage.exists(self.url):
            return []
        return sorted(int(m.group(1)) for n in storage.listdir(self.url) if (m := _NAME.match(n)))

    def _pointer(self) -> dict[str, Any] | None:
        url = self.path(LATEST)
        if not storage.exists(url):
            return None
        text = storage.read_text(url).strip()
        if _NAME.match(text):  # the name; its record is the sidecar (absent: an older version)
            return self._record(text) or {"name": text}
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not _NAME.match(str(doc.get("name", ""))):
            log.warning("%s is unreadable (%r): looking for the newest checkpoint that verifies",
                        url, text[:80])
            return {}
        return doc

    def _record(self, name: str) -> dict[str, Any] | None:
        url = self.path(name) + RECORD_SUFFIX
        if not storage.exists(url):
            return None
        try:
            doc = storage.read_json(url)
        except (BadInput, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("name") == name else None

    def read_verified(self, name: str, record: dict[str, Any] | None) -> bytes:
        """The bytes of checkpoint ``name``, checked against ``record`` (size, sha256) when there is
        one; :class:`BadInput` naming the file when they differ or it is missing."""
        url = self.path(name)
        if not storage.exists(url):
            raise BadInput(f"{url} is missing")
        data = storage.read_bytes(url)
        if record and "size" in record:
            got = FileRecord.of_bytes(data)
            if got.size != int(record["size"]):
                raise BadInput(f"{url} has {got.size} bytes, its record says {record['size']} "
                               "(truncated?)")
            if got.sha256 != record.get("sha256"):
                raise BadInput(f"{url} does not match the sha256 of its record (corrupt)")
        return data

    def latest_record(self) -> dict[str, Any] | None:
        """The record of the checkpoint ``latest`` names (None without checkpoints; ``{}`` when
        ``latest`` is unreadable; only ``{"name"}`` for a checkpoint written without a record)."""
        return self._pointer()

    def latest_url(self) -> str | None:
        """URL of the checkpoint ``latest`` names (unverified), or None when there is none."""
        p = self._pointer()
        return self.path(p["name"]) if p else None

    def load_latest(self) -> tuple[str, dict[str, Any]] | None:
        """``(url, state)`` of the newest checkpoint that verifies and loads, starting at the one
        ``latest`` names and falling back to older ones (each skip is logged); None when the run
        has no checkpoint at all."""
        pointer = self._pointer()
        steps = self.steps()
        if pointer is None and not steps:
            return None
        first = int(_NAME.match(pointer["name"]).group(1)) if pointer else max(steps, default=0)
        candidates = sorted({s for s in steps if s <= first} | ({first} if pointer else set()),
                            reverse=True)
        problems = []
        for step in candidates:
            name = checkpoint_name(step)
            record = pointer if pointer and pointer.get("name") == name and "size" in pointer \
                else self._record(name)
            try:
                state = load_bytes(self.read_verified(name, record), self.path(name))
            except BadInput as e:
                problems.append(str(e))
                log.warning("checkpoint %s cannot be used: %s; trying the previous one", name, e)
                continue
            if problems:
                log.warning("resuming from the older checkpoint %s because a newer one is corrupt "
                            "or missing (%s)", name, "; ".join(problems))
            return self.path(name), state
        raise BadInput(f"no usable checkpoint in {self.url}: " + "; ".join(problems))


def load_bytes(data: bytes, where: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by the trainer (our own files, hence full unpickling)."""
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, bad pickle: torch raises several types
        raise BadInput(f"{where} is not a readable checkpoint: {e}") from e
    if not isinstance(state, dict) or "step" not in state:
        raise BadInput(f"{where} is not a trainer checkpoint")
    return state


def load(url: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file (verified against its record when it has one)."""
    store = CheckpointStore(storage.parent(storage.parent(url)))
    name = storage.basename(url)
    record = store._record(name) if _NAME.match(name) else None
    data = store.read_verified(name, record) if record else storage.read_bytes(url)
    return load_bytes(data, url, map_location)


def latest_url(out: str) -> str | None:
    """URL of the checkpoint the run at ``out`` would resume from first (``latest``), or None."""
    return CheckpointStore(out).latest_url()


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
