"""Stopping at a boundary on SIGTERM (Kubernetes' preemption and pod deletion).

A stage runs under :func:`stop_on_sigterm`; the handler only sets an event, and the stage checks it
(:func:`check`) where stopping leaves nothing partial: between feature batches of a labelling shard
(the shard in progress is dropped whole: its files are published only after its last batch) and
between the parts of the clustering sample (the part being filled is discarded with its staging
directory). A signal that arrives while a result is being published waits for the publish.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from mhubert.errors import MhubertError


class Preempted(MhubertError):
    """The stage stopped on SIGTERM at a boundary; nothing partial was written."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """Turn SIGTERM into an event for the duration of the block (main thread only; elsewhere the
    event is returned but no handler is installed)."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)


def check(stop: threading.Event | None, where: str) -> None:
    """Raise :class:`Preempted` when ``stop`` is set."""
    if stop is not None and stop.is_set():
        raise Preempted(f"stopped by SIGTERM {where}; nothing partial was written, run it again to "
                        "complete")
