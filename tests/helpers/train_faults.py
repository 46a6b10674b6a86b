"""Fault injection for the multi-process training test, as a trainer callback (installed with
``MHUBERT_TRAIN_CALLBACKS=helpers.train_faults:Faults``; the production loop knows nothing of it).

- ``MHUBERT_TEST_KILL_AT_STEP`` + ``MHUBERT_TEST_KILL_MARKER``: the last rank SIGKILLs itself once
  after that update (the marker file remembers it did);
- ``MHUBERT_TEST_TERM_AT_STEP`` + ``MHUBERT_TEST_TERM_MARKER``: once the kill has happened (or when
  no kill is configured), the last rank sends SIGTERM to its parent, torchrun, as Kubernetes would
  to the pod, after that update, and waits (bounded) until torchrun's forwarded SIGTERM reaches it,
  so the stop is agreed at that very update.
"""

from __future__ import annotations

import os
import signal
import sys

from mhubert.train.callbacks import Callback

SIGTERM_WAIT_S = 60.0


class Faults(Callback):
    def __init__(self) -> None:
        env = os.environ
        self.kill_at = int(env.get("MHUBERT_TEST_KILL_AT_STEP", "0") or 0)
        self.kill_marker = env.get("MHUBERT_TEST_KILL_MARKER", "")
        self.term_at = int(env.get("MHUBERT_TEST_TERM_AT_STEP", "0") or 0)
        self.term_marker = env.get("MHUBERT_TEST_TERM_MARKER", "")

    def on_step_end(self, trainer, stats) -> None:
        d, step = trainer.dist, trainer.num_updates
        if d.rank != d.world_size - 1:
            return
        if self.kill_at == step and self.kill_marker and not os.path.exists(self.kill_marker):
            open(self.kill_marker, "w").close()
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        killed = not self.kill_marker or os.path.exists(self.kill_marker)
        if self.term_at == step and self.term_marker and killed \
                and not os.path.exists(self.term_marker):
            open(self.term_marker, "w").close()
            os.kill(os.getppid(), signal.SIGTERM)
            if not trainer.stop.wait(SIGTERM_WAIT_S):
                raise RuntimeError("torchrun did not forward SIGTERM within "
                                   f"{SIGTERM_WAIT_S:.0f} s")
