"""Dynamic micro-batching: one asyncio worker groups waiting requests and runs them in one thread.

A batch closes when it holds ``max_batch_size`` requests, when ``max_wait_ms`` has passed since its
first request arrived, or when one more request would push its padded size (requests x longest
audio) over ``max_batch_samples``. The forward pass runs in a single dedicated thread so the event
loop keeps accepting requests while the model works, and batches never run concurrently.

The batcher follows the app's lifespan: ``start()`` on startup, ``await stop()`` on shutdown (waiting
requests fail with :class:`NotReady`), and ``start()`` again gives a fresh queue, worker and thread.
Items carry whatever the runner needs (the service's jobs carry their model bundle), so the batcher
never looks at the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from api.metrics import Metrics
from mhubert.errors import MhubertError

log = logging.getLogger(__name__)


class QueueFull(MhubertError):
    """More requests are waiting than the server accepts (answered with 429)."""


class NotReady(MhubertError):
    """The model is not loaded (answered with 503)."""


@dataclass
class _Pending:
    item: Any
    cost: int                       # samples of audio: padded batch cost is len(batch) * max(cost)
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


Runner = Callable[[list[Any]], Sequence[Any]]


class MicroBatcher:
    """``await batcher.submit(item, cost)`` returns ``runner([..., item, ...])[i]`` for that item."""

    def __init__(self, runner: Runner, max_batch_size: int = 8, max_wait_ms: float = 5.0,
                 max_batch_samples: int = 1 << 22, max_queue: int = 64,
                 metrics: Metrics | None = None) -> None:
        self.runner = runner
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_batch_samples = max_batch_samples
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: asyncio.Queue[_Pending] | None = None
        self._carry: _Pending | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: list[_Pending] = []
        self._open: set[asyncio.Future] = set()  # futures of submitted items without a result yet
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def waiting(self) -> int:
        """Requests queued and not yet in a running batch."""
        return (self._queue.qsize() if self._queue else 0) + (1 if self._carry else 0)

    def start(self) -> None:
        """Start the worker (and its model thread) on the running event loop; again after ``stop``."""
        if self.running:
            return
        self._queue, self._carry, self._closing = asyncio.Queue(), None, False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mhubert-model")
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="mhubert-batcher")

    async def stop(self) -> None:
        """Stop the worker after the batch it is running; requests still waiting fail with NotReady."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        leftovers = [*self._inflight, *([self._carry] if self._carry else [])]
        self._inflight = []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(NotReady("server is shutting down"))
        self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new items (NotReady) and wait up to ``timeout_s`` for the submitted ones to finish;
        True when all did. Graceful shutdown calls this before :meth:`stop`."""
        self._closing = True
        if self._open:
            await asyncio.wait(set(self._open), timeout=timeout_s)
        return not self._open

    async def submit(self, item: Any, cost: int) -> Any:
        """Queue ``item`` and wait for its result; raises QueueFull when ``max_queue`` are waiting."""
        if self._queue is None or not self.running:
            raise NotReady("batcher is not running")
        if self._closing:
            raise NotReady("server is shutting down")
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are already waiting (max_queue={self.max_queue})")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._open.add(fut)
        fut.add_done_callback(self._open.discard)
        self._queue.put_nowait(_Pending(item, max(1, cost), fut))
        self._set_gauge()
        return await fut

    def _set_gauge(self) -> None:
        if self.metrics:
            self.metrics.queue_size.set(self.waiting)

    async def _next_batch(self) -> list[_Pending]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, longest = [first], first.cost
        deadline = first.enqueued + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                if self._queue.empty() and remaining > 0:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    nxt = self._queue.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if (len(batch) + 1) * max(longest, nxt.cost) > self.max_batch_samples:
                self._carry = nxt  # starts the next batch
                break
            batch.append(nxt)
            longest = max(longest, nxt.cost)
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            batch = [p for p in batch if not p.future.done()]  # client went away
            self._set_gauge()
            if not batch:
                continue
            now = time.perf_counter()
            if self.metrics:
                for p in batch:
                    self.metrics.model(self.metrics.queue_wait).observe(now - p.enqueued)
                self.metrics.model(self.metrics.batch_size).observe(len(batch))
            self._inflight = batch
            try:
                results = await loop.run_in_executor(self._executor, self.runner, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"runner returned {len(results)} results for {len(batch)} items")
            except Exception as e:  # noqa: BLE001 - every waiting request must hear about it
                log.exception("batch of %d failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                self._inflight = []
                continue
            self._inflight = []
            if self.metrics:
                self.metrics.model(self.metrics.inference).observe(time.perf_counter() - now)
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
