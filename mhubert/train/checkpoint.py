"""Atomic training checkpoints on any fsspec URL, and resume from the ``latest`` pointer.

Layout under a run directory: ``checkpoints/step-XXXXXXXX.pt`` (``torch.save`` of a dict) and
``checkpoints/latest`` (text: the file name of the newest complete checkpoint). The checkpoint is
written atomically first and the pointer last, so a crash mid-write never makes a partial checkpoint
the one a restart resumes from.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch

from mhubert import storage
from mhubert.errors import BadInput

LATEST = "latest"


def checkpoint_dir(out: str) -> str:
    return storage.join(out, "checkpoints")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def save(out: str, step: int, state: dict[str, Any]) -> str:
    """Write ``state`` as ``checkpoints/step-XXXXXXXX.pt`` then point ``latest`` at it; returns its URL."""
    buf = io.BytesIO()
    torch.save(state, buf)
    url = storage.join(checkpoint_dir(out), checkpoint_name(step))
    storage.atomic_write(url, buf.getvalue())
    storage.atomic_write_text(storage.join(checkpoint_dir(out), LATEST), checkpoint_name(step) + "\n")
    return url


def latest_url(out: str) -> str | None:
    """URL of the checkpoint ``latest`` points at, or None when there is none."""
    pointer = storage.join(checkpoint_dir(out), LATEST)
    if not storage.exists(pointer):
        return None
    name = storage.read_text(pointer).strip()
    if not name or "/" in name:
        raise BadInput(f"{pointer} is corrupt: {name!r}")
    url = storage.join(checkpoint_dir(out), name)
    if not storage.exists(url):
        raise BadInput(f"{pointer} points at {name}, which does not exist")
    return url


def load(url: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` (our own files, hence full unpickling)."""
    try:
        return torch.load(io.BytesIO(storage.read_bytes(url)), map_location=map_location,
                          weights_only=False)
    except (RuntimeError, EOFError, ValueError) as e:
        raise BadInput(f"{url} is not a readable checkpoint: {e}") from e


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
