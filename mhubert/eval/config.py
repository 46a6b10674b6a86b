"""Preset section ``superb``: the ML-SUPERB-style probes a pipeline run's evaluate step trains.

``base`` follows the paper (10 minutes per language, 3000 probe updates, dev and test sets of up to
10 minutes per language); ``tiny`` is sized to the demo's budget on 2 CPU cores, and its numbers are
labelled non-standard (a training duration other than 10min/1h). ``--set superb.KEY=VALUE`` changes
any of them (``superb.tasks=none`` switches the probes off). The FBANK baseline (``baseline``) is
trained once per pipeline run, in the first iteration's evaluate step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mhubert.errors import BadInput
from mhubert.eval.probe import ProbeConfig
from mhubert.eval.splits import SplitConfig, parse_duration
from mhubert.eval.text import TASKS

NO_TASKS = ("", "none")


@dataclass(frozen=True)
class SuperbConfig:
    tasks: str = "asr+lid"          # comma-separated: lid, asr, asr+lid; "none" for no probes
    train_per_lang: str = "10min"
    max_steps: int = 3000
    seed: int = 0                   # probe seed (splits, init, batches)
    baseline: bool = True           # FBANK, once per pipeline run
    lr: float = 1e-4
    batch_size: int = 8
    eval_interval: int = 0          # dev-loss checks every N updates (0: max_steps // 10)
    dev_max_seconds: float = 600.0  # per language
    test_max_seconds: float = 600.0

    def __post_init__(self) -> None:
        bad = [t for t in self.task_list if t not in TASKS]
        if bad:
            raise BadInput(f"superb.tasks: unknown task(s) {', '.join(bad)}; use {', '.join(TASKS)} "
                           f"(comma-separated) or none")
        parse_duration(self.train_per_lang)
        if self.eval_interval < 0:
            raise BadInput(f"superb.eval_interval must be >= 0, got {self.eval_interval}")
        self.probe()   # their own checks (positive steps, batch size, lr; dev/test limits)
        self.split()

    @property
    def task_list(self) -> list[str]:
        if self.tasks.strip().lower() in NO_TASKS:
            return []
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def probe(self) -> ProbeConfig:
        return ProbeConfig(max_steps=self.max_steps, lr=self.lr, batch_size=self.batch_size,
                           eval_interval=self.eval_interval, seed=self.seed)

    def split(self) -> SplitConfig:
        return SplitConfig(train_per_lang=self.train_per_lang, dev_max_seconds=self.dev_max_seconds,
                           test_max_seconds=self.test_max_seconds, seed=self.seed)

    def settings(self) -> dict[str, Any]:
        """What the probes' results depend on (for the evaluate step's fingerprint)."""
        return asdict(self)
