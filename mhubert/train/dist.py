"""The process group: joining it from torchrun's environment, collectives the trainer needs, seeding.

Distributed settings come from the environment torchrun and the Training Operator set (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); without them it runs as one
process. gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mhubert.errors import BadInput


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (every rank gets the list)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a MAX all_reduce)."""
        if not self.enabled:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (returns ``t``)."""
        if self.enabled:
            dist.all_reduce(t)
        return t


def init_distributed() -> Dist:
    """Join the process group described by the environment (single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise BadInput(f"WORLD_SIZE={world} but {var} is not set")
        store, rank, world = next(dist.rendezvous("env://"))
        # torchrun keeps its store across restarts: without a per-attempt prefix a restarted rank
        # can read a dead peer's address from the previous attempt and fail to connect
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group("nccl" if cuda else "gloo",
                                store=dist.PrefixStore(f"mhubert/attempt_{attempt}", store),
                                rank=rank, world_size=world)
    return Dist(rank, world, local_rank, device)


def shutdown(d: Dist) -> None:
    """Flush, wait for every rank, then leave the group (avoids aborts at interpreter exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer's bytes (replicas in sync <=> equal digests)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
