"""Preemption: SIGTERM (what Kubernetes sends a pod, and torchrun forwards to its ranks) asks the run
to stop. The handler only records the request; the trainer checks it after every update, all ranks
agree (a MAX all_reduce, so every rank stops after the same update), write one checkpoint and exit.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)

EXIT_CODE = 128 + signal.SIGTERM   # 143: what a shell reports for a SIGTERMed process


class StopRequest:
    """Set by SIGTERM (or :meth:`request`); ``wait`` lets a caller block until it is set."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
                # restart interrupted system calls (a rank blocked in a gloo collective goes on);
                # the handler still runs as soon as the interpreter gets control
                signal.siginterrupt(s, False)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        self.event.set()

    def request(self) -> None:
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    @staticmethod
    def watchdog(seconds: float) -> None:
        """After an agreed stop: if this process is still alive ``seconds`` later (a stop that hangs
        would be SIGKILLed at the end of the grace period, with no word on where it hung), print
        every thread's stack to stderr. The process goes on; the operator gets the place."""
        faulthandler.dump_traceback_later(seconds, exit=False, file=sys.stderr)
