"""Audio + frame labels for pretraining, and the per-epoch DataLoader.

``LabeledAudio`` joins a manifest (``mhubert.artifacts.Manifest``) with a labels directory
(``mhubert.clustering``: ``labels.npy``/``offsets.npy``/``_SUCCESS``), checks that every utterance's
label count matches its duration (0.1 s tolerance, as the fairseq fork), and drops utterances shorter
than ``min_sample_size``. ``epoch_loader`` plans an epoch (``mhubert.data.batching``) and decodes its
batches in DataLoader workers, each reading a batch's files concurrently (``io_threads``; object
stores answer in tens of ms per request) and preparing ``prefetch_batches`` ahead. Any soundfile
format is read (Common Voice's mp3, MLS's opus). A decoded length that differs from the manifest's
(metadata durations) is fitted to it, and counted and logged when over 1 %.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mhubert import audio, storage
from mhubert.artifacts import Labels
from mhubert.data.batching import Batch, collate_crop, collate_pad, plan_epoch
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

LABEL_TOLERANCE_S = 0.1
MISMATCH = 0.01  # decoded vs manifest length, relative: counted and logged, never fatal


@dataclass
class DataConfig:
    """The ``data:`` preset section. Lengths are in samples at ``sample_rate`` Hz."""

    sample_rate: int = 16000
    max_sample_size: int = 250_000    # crop cap (15.6 s)
    min_sample_size: int = 32_000     # keep-filter (2 s)
    max_tokens: int = 2_800_000       # samples per GPU batch
    batching: str = "crop"            # crop | pad
    normalize: bool = True            # layer_norm of each waveform (fairseq normalize=True)
    alpha: float = 0.7                # language up-sampling exponent
    beta: float = 0.9                 # dataset-within-language exponent
    num_workers: int = 2              # DataLoader decoding processes
    io_threads: int = 16              # concurrent reads of a batch's files (object stores)
    prefetch_batches: int = 4         # batches each worker prepares ahead


def read_label_dir(labels: Labels | str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(flat labels, offsets (N+1,), marker info)`` of a committed labels artifact."""
    labels = labels if isinstance(labels, Labels) else Labels(labels)
    flat, offsets = labels.read()
    return flat, offsets, labels.info


class LabeledAudio:
    """Utterances of a manifest with their frame labels; only those kept by ``min_sample_size``.

    ``lengths[i]`` (samples) and ``keys[i]`` ((lang, dataset)) describe kept utterance ``i``;
    ``load(i) -> (wav (samples,) float32, labels (frames,) int64 ndarray)``.
    """

    def __init__(self, manifest, labels_dir: Labels | str, cfg: DataConfig,
                 label_rate: int | None = None):
        self.manifest = manifest
        self.cfg = cfg
        self.flat, self.offsets, info = read_label_dir(labels_dir)
        self.label_rate = int(label_rate or info.get("label_rate") or 0)
        if self.label_rate not in (50, 100):
            raise BadInput(f"label_rate must be 50 or 100 Hz, got {self.label_rate} "
                           f"(from {labels_dir}/_SUCCESS or the caller)")
        n = len(manifest)
        if len(self.offsets) != n + 1:
            raise BadInput(f"{labels_dir} has labels for {len(self.offsets) - 1} utterances, "
                           f"the manifest has {n}")
        all_len = np.asarray(manifest.n_samples, dtype=np.int64)
        n_lab = np.diff(self.offsets)
        gap = np.abs(all_len / cfg.sample_rate - n_lab / self.label_rate)
        bad = np.flatnonzero(gap > LABEL_TOLERANCE_S)
        if len(bad):
            i = int(bad[0])
            raise BadInput(f"audio and labels differ by {gap[i]:.3f} s (> {LABEL_TOLERANCE_S} s) for "
                           f"{manifest.path(i)}: {all_len[i]} samples vs {n_lab[i]} labels at "
                           f"{self.label_rate} Hz ({len(bad)} such utterance(s); wrong label_rate?)")
        self.kept = np.flatnonzero(all_len >= cfg.min_sample_size)
        if len(self.kept) == 0:
            raise BadInput(f"no utterance reaches data.min_sample_size={cfg.min_sample_size} samples")
        if len(self.kept) < n:
            log.info("kept %d of %d utterances (min_sample_size=%d)", len(self.kept), n,
                     cfg.min_sample_size)
        self.lengths = all_len[self.kept]
        self.mismatched = 0  # decoded lengths > 1 % off the manifest's (metadata durations)
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        gid, group_keys = manifest.group_ids()
        self.groups = (gid[self.kept], group_keys)  # what TwoLevelSampler takes, vectorised

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(lang, dataset) of every kept utterance."""
        gid, group_keys = self.groups
        return [group_keys[g] for g in gid.tolist()]

    def __len__(self) -> int:
        return len(self.kept)

    def _labels(self, j: int) -> np.ndarray:
        return self.flat[self.offsets[j]:self.offsets[j + 1]].astype(np.int64)

    def _decode(self, j: int, data: bytes) -> torch.Tensor:
        """Decode utterance ``j`` and fit it to the manifest's length: metadata durations may
        differ from the decoded audio by a few samples (or more, counted and logged)."""
        url = self.manifest.url_of(j)
        try:
            wav = audio.decode(data, target_sr=self.cfg.sample_rate, normalize=self.cfg.normalize)
        except audio.AudioError as e:
            raise audio.AudioError(f"{url}: {e}") from e
        want = int(self.manifest.n_samples[j])
        if wav.numel() != want:
            if abs(wav.numel() - want) > MISMATCH * want:
                self.mismatched += 1
                if self.mismatched <= 10:
                    log.warning("%s: decoded %d samples, the manifest says %d (> 1 %%); fitted",
                                url, wav.numel(), want)
            wav = wav[:want] if wav.numel() > want else torch.nn.functional.pad(wav, (0, want - wav.numel()))
        return wav

    def load(self, i: int) -> tuple[torch.Tensor, np.ndarray]:
        return self.load_many([i])[0]

    def load_many(self, indices) -> list[tuple[torch.Tensor, np.ndarray]]:
        """Kept utterances ``indices``: their files read concurrently (``io_threads``), then decoded."""
        js = [int(self.kept[i]) for i in indices]
        urls = [self.manifest.url_of(j) for j in js]
        if len(urls) > 1 and self.cfg.io_threads > 1:
            if self._pool is None or self._pool[0] != os.getpid():  # a forked worker: its own pool
                self._pool = (os.getpid(), ThreadPoolExecutor(max_workers=self.cfg.io_threads))
            blobs = list(self._pool[1].map(storage.read_bytes, urls))
        else:
            blobs = [storage.read_bytes(u) for u in urls]
        return [(self._decode(j, b), self._labels(j)) for j, b in zip(js, blobs, strict=True)]

    def __getstate__(self) -> dict:  # DataLoader workers: each builds its own pool
        d = dict(self.__dict__)
        d["_pool"] = None
        return d


class BatchDecoder(Dataset):
    """Map-style dataset whose keys are planned :class:`Batch` es; returns the collated batch dict:
    ``wav (B, S)``, ``lengths (B,) | None``, ``labels (B, L)``, ``n_samples`` (real audio samples)."""

    def __init__(self, data: LabeledAudio, seed: int):
        self.data = data
        self.seed = seed

    def __len__(self) -> int:  # not used for sampling; keys come from the planned batches
        return len(self.data)

    def __getitem__(self, batch: Batch) -> dict:
        cfg = self.data.cfg
        rng = np.random.default_rng([self.seed, batch.epoch, batch.index])
        loaded = self.data.load_many(batch.indices)
        wavs = [w for w, _ in loaded]
        labs = [lab for _, lab in loaded]
        if cfg.batching == "crop":
            wav, labels = collate_crop(wavs, labs, batch.length, rng, self.data.label_rate,
                                       cfg.sample_rate)
            lengths = None
            n_samples = wav.numel()
        else:
            wav, lengths, labels = collate_pad(wavs, labs, batch.length, rng, self.data.label_rate,
                                               cfg.sample_rate)
            n_samples = int(lengths.sum())
        return {"wav": wav, "lengths": lengths, "labels": labels, "n_samples": n_samples,
                "epoch": batch.epoch, "index": batch.index}


def _identity(x):
    return x


def _own_process_group(worker_id: int) -> None:
    """Decoding workers leave SIGTERM to the trainer. torchrun signals each rank's process group,
    and a worker dying of it would abort the rank while it writes its preemption checkpoint; so
    each worker leaves that group. It still ends when the loader shuts it down (multiprocessing's
    SIGTERM reaches it), and within seconds of its rank's death (the loader's parent watchdog).
    (Ignoring SIGTERM instead made a rank that exits with its loader still open hang at exit:
    multiprocessing terminates and joins its children there, and the join never returns.)"""
    os.setpgid(0, 0)


class EpochPlanner:
    """Plans each epoch's batches for one rank: two-level sampler draw, then batching.plan_epoch."""

    def __init__(self, data: LabeledAudio, seed: int, rank: int = 0, world_size: int = 1):
        from mhubert.data.sampling import TwoLevelSampler

        self.data, self.seed, self.rank, self.world_size = data, seed, rank, world_size
        self.sampler = TwoLevelSampler(data.groups, alpha=data.cfg.alpha, beta=data.cfg.beta, seed=seed)

    def plan(self, epoch: int) -> list[Batch]:
        cfg = self.data.cfg
        draw = np.asarray(self.sampler.epoch(epoch), dtype=np.int64)
        return plan_epoch(draw, self.data.lengths, epoch=epoch, seed=self.seed,
                          max_tokens=cfg.max_tokens, max_sample_size=cfg.max_sample_size,
                          mode=cfg.batching, rank=self.rank, world_size=self.world_size)

    def loader(self, epoch: int, start: int = 0) -> tuple[int, DataLoader]:
        """``(batches in the epoch, loader over batches start..end)``."""
        batches = self.plan(epoch)
        workers = self.data.cfg.num_workers
        dl = DataLoader(BatchDecoder(self.data, self.seed), batch_size=None,
                        sampler=batches[start:], num_workers=workers, collate_fn=_identity,
                        worker_init_fn=_own_process_group if workers else None,
                        persistent_workers=False,
                        prefetch_factor=max(1, self.data.cfg.prefetch_batches) if workers else None,
                        # a private generator: creating the loader must not consume the global
                        # torch RNG, or a resumed run would diverge from an uninterrupted one
                        generator=torch.Generator().manual_seed(self.seed + epoch))
        return len(batches), dl
