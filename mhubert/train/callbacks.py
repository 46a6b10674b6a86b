"""Hooks into the training loop: telemetry, fault injection in tests, anything a run wants to watch.

A callback subclasses :class:`Callback` and overrides the hooks it needs; every hook gets the
:class:`~mhubert.train.trainer.Trainer` (``trainer.num_updates``, ``trainer.dist``, ``trainer.run``,
...). Callbacks are named on the command line as ``module:Class`` (``--callback``, or the
``MHUBERT_TRAIN_CALLBACKS`` environment variable, comma-separated) and built without arguments.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

from mhubert.errors import BadInput

# hooks get the mhubert.train.trainer.Trainer (not imported here: the trainer imports this module)
Trainer = Any

log = logging.getLogger(__name__)

CALLBACKS_ENV = "MHUBERT_TRAIN_CALLBACKS"


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, trainer: Trainer) -> None:
        """After the model is built and any checkpoint is loaded, before the first update."""

    def on_step_end(self, trainer: Trainer, stats: dict[str, Any]) -> None:
        """After each optimizer update (and its logging and checkpointing). ``stats``: this
        update's ``loss``, ``gnorm``, ``lr``, ``step_time_s``, ``samples`` on this rank."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After a log record (averaged over ranks, every ``log_interval`` updates) is made."""

    def on_checkpoint(self, trainer: Trainer, step: int, url: str) -> None:
        """After a checkpoint is committed (rank 0: written; other ranks: agreed)."""

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """When the loop ends (finished, stopped, or preempted), before export."""

    def close(self) -> None:
        """Release resources (ports, files); called once, also after an error."""


class CallbackList(Callback):
    """Calls each hook of every callback in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer):
        for c in self.callbacks:
            c.on_train_start(trainer)

    def on_step_end(self, trainer, stats):
        for c in self.callbacks:
            c.on_step_end(trainer, stats)

    def on_log(self, trainer, record):
        for c in self.callbacks:
            c.on_log(trainer, record)

    def on_checkpoint(self, trainer, step, url):
        for c in self.callbacks:
            c.on_checkpoint(trainer, step, url)

    def on_train_end(self, trainer, summary):
        for c in self.callbacks:
            c.on_train_end(trainer, summary)

    def close(self):
        for c in self.callbacks:
            try:
                c.close()
            except Exception as e:  # closing one must not hide the others or the real error
                log.warning("closing callback %r failed: %s", c, e)


def load_callback(spec: str) -> Callback:
    """Build the callback named ``module:Class`` (no arguments)."""
    module, _, name = spec.strip().partition(":")
    if not module or not name:
        raise BadInput(f"callback {spec!r} must look like package.module:ClassName")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise BadInput(f"callback {spec!r} cannot be loaded: {e}") from e
    obj = cls()
    if not isinstance(obj, Callback):
        raise BadInput(f"callback {spec!r} is not a mhubert.train.callbacks.Callback")
    return obj


def callback_specs(options: list[str] | None, env_value: str | None) -> list[str]:
    """``--callback`` options followed by the comma-separated environment variable's entries."""
    return [*(options or []), *[s for s in (env_value or "").split(",") if s.strip()]]
