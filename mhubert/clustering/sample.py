"""The clustering sample: α/β up-sampled by hours, filled up to a memory budget, stored in parts.

As mHuBERT-147's ``probability_sampling_from_size_estimation.py``: bytes per frame = 4·D (float32),
frames per second = the features' frame rate, so a budget of B GB holds B·1e9 / (4·D) frames.
Groups (language, dataset) get seconds ∝ the two-level α/β probabilities computed on hours:
whole-group repeats when the group is smaller than its share, random utterances when larger
(``mhubert.data.sampling.budgeted_sample``).

Features are computed utterance-batch by batch and written straight into preallocated on-disk
``np.memmap`` parts; the corpus is never held in memory. The sample is a
:class:`~mhubert.artifacts.ClusteringSample` (``<clustering>/sample/``)::

    part-00000.npy ...   float32 (rows, D), at most ``shard_bytes`` each
    segments.npy         int64 (M, 2): [manifest index, frames] of each copy, in row order
    _SUCCESS             the marker; info: num_frames, dim, label_rate, parts, rows, features, ...

On SIGTERM the sample stops at a part boundary: the part being filled is discarded, nothing is
committed, and a rerun computes it again.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from mhubert import storage
from mhubert.artifacts import ClusteringSample, Manifest, decide
from mhubert.artifacts import marker as mk
from mhubert.clustering import ClusteringConfig
from mhubert.clustering.inputs import feature_inputs, manifest_fingerprint
from mhubert.clustering.stop import check
from mhubert.data.sampling import budgeted_sample
from mhubert.errors import BadInput
from mhubert.features.featurizer import Featurizer
from mhubert.features.spec import FeatureSpec

log = logging.getLogger(__name__)

SHARD_BYTES = 256 * 2**20


def part_name(i: int) -> str:
    return f"part-{i:05d}.npy"


def select(keys: Sequence[tuple[str, str]], frames: Sequence[int], label_rate: int,
           budget_frames: int, alpha: float, beta: float, seed: int) -> np.ndarray:
    """Sorted manifest indices (with repeats) whose frames add up to at most ``budget_frames``.

    ``budgeted_sample`` may overshoot by one utterance per group; the overshoot is dropped at random.
    """
    if budget_frames <= 0:
        raise BadInput("the memory budget holds no frame: raise --budget-gb")
    frames_arr = np.asarray(frames, dtype=np.int64)
    idx = budgeted_sample(list(keys), (frames_arr / label_rate).tolist(), budget_frames / label_rate,
                          alpha, beta, seed)
    if frames_arr[idx].sum() > budget_frames:
        perm = np.random.default_rng(seed + 1).permutation(idx)
        keep = np.cumsum(frames_arr[perm]) <= budget_frames
        idx = np.sort(perm[keep])
    return idx


def _publish(local: str, url: str) -> mk.FileRecord:
    """Move a finished local file to ``url``; returns its record (hashed here, while it is hot)."""
    rec = mk.hash_url(local)
    dest = storage.local_path(url)
    if dest is not None:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        os.replace(local, dest)       # the staging dir is beside the target: an atomic rename
    else:
        storage.upload_file(local, url)
        os.remove(local)
    return rec


def sample_settings(spec: FeatureSpec, cfg: ClusteringConfig) -> dict:
    return {"clustering": cfg.sample_settings(), "features": spec.to_dict()}


def sample_inputs(manifest_url: str, spec: FeatureSpec) -> dict:
    return {"manifest": manifest_fingerprint(manifest_url), **feature_inputs(spec)}


def build_sample(manifest_url: str, out_dir: str, spec: FeatureSpec, cfg: ClusteringConfig,
                 shard_bytes: int = SHARD_BYTES, progress: bool = True, on_change: str = "stop",
                 stop: threading.Event | None = None) -> dict:
    """Compute the budgeted sample of ``manifest_url`` into ``out_dir`` (the ``sample/`` directory).

    Returns the marker info. A sample committed with the same settings and inputs is reused; one
    committed with others stops (``on_change``: see :func:`mhubert.artifacts.decide`).
    """
    art = ClusteringSample(out_dir)
    settings, inputs = sample_settings(spec, cfg), sample_inputs(manifest_url, spec)
    if decide(art, settings, inputs, on_change) == "reuse":
        log.info("sample %s is already committed", out_dir)
        return art.info
    if cfg.memory_budget_gb <= 0:
        raise BadInput(f"memory budget must be > 0 GB, got {cfg.memory_budget_gb}")
    manifest = Manifest.read(manifest_url)
    if len(manifest) == 0:
        raise BadInput(f"manifest {manifest_url} lists no utterance")
    ex = Featurizer(spec)
    rate, dim = ex.frame_rate, ex.dim
    frames = [ex.num_frames(e.n_samples) for e in manifest]
    budget_frames = int(cfg.memory_budget_gb * 1e9 // ex.bytes_per_frame)
    idx = select(manifest.keys, frames, rate, budget_frames, cfg.alpha, cfg.beta, cfg.seed)
    uniq, copies = np.unique(idx, return_counts=True)
    total = int(sum(frames[u] * c for u, c in zip(uniq, copies, strict=True)))
    if total == 0:
        raise BadInput("the budgeted sample is empty: the utterances are too short or the budget too small")
    rows_per_part = max(1, shard_bytes // ex.bytes_per_frame)
    log.info("sample: %d utterances (%d with repeats), %d frames x %d = %.3f GB (budget %.3f GB)",
             len(uniq), len(idx), total, dim, total * ex.bytes_per_frame / 1e9, cfg.memory_budget_gb)

    local_out = storage.local_path(out_dir)
    if local_out is not None:
        os.makedirs(local_out, exist_ok=True)
        need, free = total * ex.bytes_per_frame, shutil.disk_usage(local_out).free
        if need > free:   # a small corpus repeated up to a large budget would fill the disk
            raise BadInput(f"the clustering sample needs {need / 1e9:.3g} GB ({len(idx)} utterance copies "
                           f"filling clustering.memory_budget_gb={cfg.memory_budget_gb:g}) but "
                           f"{local_out} has {free / 1e9:.3g} GB free: lower clustering.memory_budget_gb")
    if storage.exists(out_dir):       # parts an interrupted run left behind are not ours
        for name in storage.listdir(out_dir):
            if name.startswith("part-") and name.endswith(".npy"):
                storage.remove(storage.join(out_dir, name))
    stage = tempfile.mkdtemp(prefix=".staging-", dir=local_out)
    part_rows: list[int] = []
    segments: list[tuple[int, int]] = []
    try:
        part, pos, buf = 0, 0, None

        def open_part() -> np.memmap:
            n = min(rows_per_part, total - sum(part_rows))
            return np.lib.format.open_memmap(os.path.join(stage, part_name(part)), mode="w+",
                                             dtype=np.float32, shape=(n, dim))

        bar = tqdm(total=total, unit="frame", unit_scale=True, desc="sample", disable=not progress)
        for ids, feats in ex.iter_manifest(manifest, uniq):
            check(stop, f"while sampling {out_dir} (after {part} complete parts)")
            for i, f in zip(ids, feats, strict=True):
                if f.shape[0] != frames[i]:
                    raise BadInput(f"{manifest.url_of(i)}: {f.shape[0]} frames, but the manifest's "
                                   f"{manifest[i].n_samples} samples give {frames[i]}")
                for _ in range(int(copies[np.searchsorted(uniq, i)])):
                    segments.append((i, f.shape[0]))
                    s = 0
                    while s < f.shape[0]:
                        if buf is None:
                            buf, pos = open_part(), 0
                        n = min(f.shape[0] - s, buf.shape[0] - pos)
                        buf[pos:pos + n] = f[s:s + n]
                        pos, s = pos + n, s + n
                        bar.update(n)
                        if pos == buf.shape[0]:
                            buf.flush()
                            del buf
                            buf = None
                            part_rows.append(pos)
                            art.record(part_name(part), _publish(os.path.join(stage, part_name(part)),
                                                                 art.path(part_name(part))))
                            part += 1
        bar.close()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    seg = io.BytesIO()
    np.save(seg, np.asarray(segments, dtype=np.int64).reshape(-1, 2))
    art.write_bytes("segments.npy", seg.getvalue())
    info = {"num_frames": total, "dim": dim, "label_rate": rate,
            "parts": [part_name(i) for i in range(len(part_rows))], "rows": part_rows,
            "num_utterances": len(uniq), "num_copies": len(idx), "features": ex.describe(),
            "memory_budget_gb": cfg.memory_budget_gb, "alpha": cfg.alpha, "beta": cfg.beta,
            "seed": cfg.seed, "manifest": manifest_url}
    art.commit(info, settings=settings, inputs=inputs)
    return info


def read_info(sample_dir: str) -> dict:
    """The committed sample's marker info."""
    return ClusteringSample(sample_dir).info


def _read_part(url: str) -> np.ndarray:
    p = storage.local_path(url)
    if p is not None:
        return np.load(p, mmap_mode="r")
    return np.load(io.BytesIO(storage.read_bytes(url)))


def load_sample(sample_dir: str, max_rows: int | None = None, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, D) float32, rows (N,) int64)``: all rows, or ``max_rows`` random rows (sorted), read
    one part at a time (local parts are memory-mapped)."""
    art = ClusteringSample(sample_dir)
    info = art.info
    art.verify(list(info["parts"]), digest=False)
    total = int(info["num_frames"])
    if max_rows is not None and max_rows < total:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    else:
        rows = np.arange(total, dtype=np.int64)
    out = np.empty((len(rows), int(info["dim"])), dtype=np.float32)
    start, done = 0, 0
    for name, n in zip(info["parts"], info["rows"], strict=True):
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            part = _read_part(art.path(name))
            out[done:done + hi - lo] = part[rows[lo:hi] - start]
            done += hi - lo
        start += n
    return out, rows.astype(np.int64)


def row_utterances(sample_dir: str) -> np.ndarray:
    """(num_frames,) int64: the manifest index of every row of the sample."""
    seg = ClusteringSample(sample_dir).read_bytes("segments.npy")
    seg = np.load(io.BytesIO(seg))
    return np.repeat(seg[:, 0], seg[:, 1]) if len(seg) else np.zeros(0, dtype=np.int64)
