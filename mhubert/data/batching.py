"""Epoch planning and collation for HuBERT pretraining (the mHuBERT-147 fairseq-fork recipe).

An epoch is planned from utterance lengths alone, so every rank computes the same plan and a run can
resume at ``(epoch, batch index)``:

1. the two-level sampler draws N utterance indices (re-drawn every epoch from ``seed + epoch``);
2. the draw is shuffled, then stably sorted by length, ascending;
3. consecutive utterances are grouped while ``batch_size * batch_len <= max_tokens`` (``crop``: the
   batch length is the shortest member capped at ``max_sample_size``; ``pad``: the longest, capped);
4. the batches are shuffled, trimmed to a multiple of the world size and dealt round-robin to ranks.

Collation crops every utterance of a ``crop`` batch to the batch length at a random offset (seeded by
``(seed, epoch, batch index)``, so workers and restarts draw the same offsets) and crops the labels
consistently: label offset ``round(offset * label_rate / sample_rate)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mhubert.errors import BadInput

MODES = ("crop", "pad")


@dataclass(frozen=True)
class Batch:
    """One planned batch: utterance indices (into the dataset) and the length in samples they get."""

    epoch: int
    index: int            # position of this batch in this rank's list for the epoch
    indices: tuple[int, ...]
    length: int           # crop length (crop mode) or padded length (pad mode), samples


def sort_by_length(draw: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffle the drawn utterance indices, then stably sort them by length, ascending."""
    draw = np.asarray(draw, dtype=np.int64)
    draw = draw[rng.permutation(len(draw))]
    return draw[np.argsort(lengths[draw], kind="stable")]


def group(order: np.ndarray, lengths: np.ndarray, max_tokens: int, max_sample_size: int,
          mode: str = "crop") -> list[tuple[np.ndarray, int]]:
    """Greedily cut an ascending-length ``order`` into ``(indices, batch_len)`` with
    ``len(indices) * batch_len <= max_tokens`` (at least one utterance per batch)."""
    if mode not in MODES:
        raise BadInput(f"data.batching must be one of {MODES}, got {mode!r}")
    if max_tokens < 1 or max_sample_size < 1:
        raise BadInput("data.max_tokens and data.max_sample_size must be positive")
    batches: list[tuple[np.ndarray, int]] = []
    start, n = 0, len(order)
    while start < n:
        first = int(min(lengths[order[start]], max_sample_size))
        end = start + 1
        batch_len = first
        while end < n:
            cand = first if mode == "crop" else int(min(lengths[order[end]], max_sample_size))
            if (end - start + 1) * cand > max_tokens:
                break
            batch_len = cand
            end += 1
        batches.append((order[start:end], batch_len))
        start = end
    return batches


def shard(batches: Sequence, rank: int, world_size: int) -> list:
    """Every ``world_size``-th batch starting at ``rank``, after dropping the tail so all ranks get
    the same number of batches (DDP needs equal step counts)."""
    if not 0 <= rank < world_size:
        raise BadInput(f"rank {rank} outside world size {world_size}")
    usable = len(batches) - len(batches) % world_size
    if usable == 0:
        raise BadInput(f"only {len(batches)} batch(es) per epoch for {world_size} ranks: "
                       "add data or lower data.max_tokens")
    return list(batches[rank:usable:world_size])


def plan_epoch(draw: np.ndarray, lengths: np.ndarray, *, epoch: int, seed: int, max_tokens: int,
               max_sample_size: int, mode: str = "crop", rank: int = 0,
               world_size: int = 1) -> list[Batch]:
    """This rank's batches for ``epoch`` from the sampler's ``draw`` (steps 2-4 of the module doc)."""
    rng = np.random.default_rng([seed, epoch])
    order = sort_by_length(draw, lengths, rng)
    grouped = group(order, lengths, max_tokens, max_sample_size, mode)
    grouped = [grouped[i] for i in rng.permutation(len(grouped))]
    mine = shard(grouped, rank, world_size)
    return [Batch(epoch, i, tuple(int(x) for x in idx), int(blen)) for i, (idx, blen) in enumerate(mine)]


def label_offset(offset_samples: int, label_rate: int, sample_rate: int = 16000) -> int:
    """Index of the first label of a crop starting at ``offset_samples``."""
    return int(round(offset_samples * label_rate / sample_rate))


def label_count(n_samples: int, label_rate: int, sample_rate: int = 16000) -> int:
    """Labels needed to cover ``n_samples`` of audio (the model truncates any excess)."""
    return int(math.ceil(n_samples * label_rate / sample_rate))


def collate_crop(wavs: Sequence[torch.Tensor], labels: Sequence[np.ndarray], crop_len: int,
                 rng: np.random.Generator, label_rate: int, sample_rate: int = 16000
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each waveform to ``crop_len`` samples at a random offset and its labels to match.

    Returns ``wav (B, crop_len) float32`` and ``labels (B, L) int64`` (L: the shortest label crop).
    """
    out_w, out_l = [], []
    for wav, lab in zip(wavs, labels, strict=True):
        n = int(wav.shape[0])
        if n < crop_len:
            raise BadInput(f"utterance of {n} samples shorter than its batch crop {crop_len}")
        off = int(rng.integers(0, n - crop_len + 1))
        lo = min(label_offset(off, label_rate, sample_rate), len(lab))
        out_w.append(wav[off:off + crop_len])
        out_l.append(lab[lo:lo + label_count(crop_len, label_rate, sample_rate)])
    n_lab = min(len(x) for x in out_l)
    lab_t = torch.from_numpy(np.stack([x[:n_lab] for x in out_l]).astype(np.int64))
    return torch.stack(out_w), lab_t


def collate_pad(wavs: Sequence[torch.Tensor], labels: Sequence[np.ndarray], pad_len: int,
                rng: np.random.Generator, label_rate: int, sample_rate: int = 16000
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-pad to ``pad_len`` (utterances longer than it are randomly cropped to it).

    Returns ``wav (B, pad_len)``, ``lengths (B,) int64`` and ``labels (B, L) int64`` padded with -1
    past each utterance's labels (the model ignores negative labels and frames beyond ``lengths``).
    """
    out_w = torch.zeros(len(wavs), pad_len, dtype=torch.float32)
    lengths = torch.zeros(len(wavs), dtype=torch.int64)
    labs = []
    for i, (wav, lab) in enumerate(zip(wavs, labels, strict=True)):
        n = int(wav.shape[0])
        off = int(rng.integers(0, n - pad_len + 1)) if n > pad_len else 0
        keep = min(n, pad_len)
        out_w[i, :keep] = wav[off:off + keep]
        lengths[i] = keep
        lo = min(label_offset(off, label_rate, sample_rate), len(lab))
        labs.append(lab[lo:lo + label_count(keep, label_rate, sample_rate)])
    n_lab = label_count(pad_len, label_rate, sample_rate)
    lab_t = torch.full((len(wavs), n_lab), -1, dtype=torch.int64)
    for i, x in enumerate(labs):
        lab_t[i, :len(x)] = torch.from_numpy(np.asarray(x[:n_lab], dtype=np.int64))
    return out_w, lengths, lab_t
