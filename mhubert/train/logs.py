"""What a run reports: the per-interval meter (summed on the device, averaged over ranks), the
``log.jsonl`` records of a :class:`~mhubert.artifacts.TrainRun`, and the loss curve."""

from __future__ import annotations

import json
import resource
import time
from typing import Any

import torch

from mhubert import storage
from mhubert.artifacts import TrainRun
from mhubert.constants import SAMPLE_RATE
from mhubert.plotting import figure_png
from mhubert.train.dist import Dist


def memory_gb(device: torch.device) -> float:
    """Peak device memory (CUDA) or peak resident set size of this process, GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Meter:
    """Sums over a log interval, kept on the device (no host sync per step)."""

    KEYS = ("loss", "batches", "correct_m", "count_m", "correct_u", "count_u", "samples", "gnorm",
            "updates")

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.KEYS), dtype=torch.float64, device=self.device)
        self.t0 = time.perf_counter()

    def add(self, **values: Any) -> None:
        for k, v in values.items():
            v = v.detach().to(torch.float64) if torch.is_tensor(v) else float(v)
            self.sums[self.KEYS.index(k)] += v

    def summary(self, d: Dist) -> dict[str, float]:
        """Averages over the interval and every rank (a collective: call on every rank)."""
        v = dict(zip(self.KEYS, d.sum_(self.sums.clone()).tolist(), strict=True))
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return {"loss": v["loss"] / max(v["batches"], 1.0),
                "acc_m": v["correct_m"] / max(v["count_m"], 1.0),
                "acc_u": v["correct_u"] / max(v["count_u"], 1.0),
                "gnorm": v["gnorm"] / max(v["updates"], 1.0),
                "audio_s_per_s": v["samples"] / SAMPLE_RATE / elapsed}


class RunLog:
    """``log.jsonl``: one JSON record per log interval, rewritten atomically on each append."""

    def __init__(self, run: TrainRun):
        self.run = run
        self.records: list[dict[str, Any]] = []

    def load(self, up_to: int) -> None:
        """The records of a resumed run, up to update ``up_to``."""
        url = self.run.log_url
        rows = ([json.loads(line) for line in storage.read_text(url).splitlines() if line.strip()]
                if storage.exists(url) else [])
        self.records = [r for r in rows if r.get("step", 0) <= up_to]

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.run.write_text(TrainRun.LOG, "".join(json.dumps(r, sort_keys=True) + "\n"
                                                  for r in self.records))

    def plot(self) -> bytes:
        """PNG of the loss and masked accuracy curves."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [r["step"] for r in self.records]
        ax.plot(steps, [r["loss"] for r in self.records], label="loss (masked CE + penalty)")
        ax.set_xlabel("update")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        ax2.plot(steps, [r["acc_m"] for r in self.records], color="tab:orange",
                 label="masked accuracy")
        ax2.set_ylabel("masked accuracy")
        fig.legend(loc="upper right")
        return figure_png(fig)
