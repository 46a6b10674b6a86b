"""Checkpoint writes that never stop training: a failed write is kept and retried.

``submit`` serializes nothing itself: it takes the checkpoint's bytes, tries to publish them
(:meth:`CheckpointStore.write`), and on failure keeps them and tries again after 1, 2, 4, ... updates
(at most every ``MAX_GAP`` updates) while training goes on; a newer checkpoint replaces a pending
older one. ``latest`` keeps naming the last complete checkpoint throughout. ``drain`` (at the end,
or on preemption) retries with a time budget and raises when the storage stays down past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mhubert.errors import BadInput
from mhubert.train.checkpoint import CheckpointStore

log = logging.getLogger(__name__)

MAX_GAP = 64


class RetryingWriter:
    def __init__(self, store: CheckpointStore, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.clock, self.sleep = clock, sleep
        self.pending: tuple[int, bytes, dict] | None = None
        self.failures = 0
        self.retry_at = 0                  # update count of the next retry
        self.committed_step: int | None = None
        self.committed_at = clock()        # time of the last commit (or of the start)

    def _try(self) -> bool:
        assert self.pending is not None
        step, data, meta = self.pending
        try:
            self.store.write(step, data, meta)
        except Exception as e:  # storage errors come in many types (OSError, botocore, fsspec)
            self.failures += 1
            log.warning("writing checkpoint %d failed (attempt %d): %s: %s; training continues and "
                        "the write is retried; latest still names %s", step, self.failures,
                        type(e).__name__, e,
                        f"step {self.committed_step}" if self.committed_step is not None else "none")
            return False
        if self.failures:
            log.info("checkpoint %d written after %d failed attempt(s)", step, self.failures)
        self.pending, self.failures = None, 0
        self.committed_step, self.committed_at = step, self.clock()
        return True

    def submit(self, step: int, data: bytes, meta: dict | None = None) -> bool:
        """Publish the checkpoint of ``step`` now (``meta`` goes into its record); False (and kept
        for retry) when that fails."""
        self.pending, self.failures = (step, data, dict(meta or {})), 0
        ok = self._try()
        if not ok:
            self.retry_at = step + 1
        return ok

    def tick(self, step: int) -> bool:
        """After update ``step``: retry a pending write when its turn has come. True when nothing
        is pending afterwards."""
        if self.pending is None:
            return True
        if step < self.retry_at:
            return False
        ok = self._try()
        if not ok:
            self.retry_at = step + min(2 ** self.failures, MAX_GAP)
        return ok

    def drain(self, budget_s: float, first_wait_s: float = 1.0) -> None:
        """Retry a pending write until it succeeds or ``budget_s`` seconds have passed."""
        deadline = self.clock() + budget_s
        wait = first_wait_s
        while self.pending is not None:
            if self._try():
                return
            if self.clock() + wait > deadline:
                step = self.pending[0]
                raise BadInput(f"could not write checkpoint {step} to {self.store.url} within "
                               f"{budget_s:.0f} s ({self.failures} attempts); the storage is down")
            self.sleep(wait)
            wait = min(wait * 2, 30.0)

    def seconds_since_commit(self) -> float:
        return self.clock() - self.committed_at
