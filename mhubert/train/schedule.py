"""Learning-rate schedule: linear warmup to the peak, then linear decay to 0 at ``max_update``
(fairseq ``polynomial_decay`` with power 1 and end_learning_rate 0)."""

from __future__ import annotations

import torch


def lr_factor(step: int, warmup_updates: int, max_update: int) -> float:
    """Multiplier of the peak lr after ``step`` completed updates (fairseq: the first update also
    uses 1/warmup_updates; the factor reaches 1 at ``warmup_updates`` and 0 at ``max_update``)."""
    if warmup_updates > 0 and step <= warmup_updates:
        return max(step, 1) / warmup_updates
    if step >= max_update:
        return 0.0
    return 1.0 - (step - warmup_updates) / (max_update - warmup_updates)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_updates: int,
                    max_update: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_updates, max_update))
