"""``mhubert features mfcc``: fairseq-style MFCC dump of one manifest shard.

Writes ``<out>/<split>_<shard>_<num_shards>.npy`` (float32, all frames of the shard concatenated,
(frames, 39)) and ``.len`` (frames per utterance, one line each, manifest order) as fairseq's
``dump_mfcc_feature.py``, then a ``<split>_<shard>_<num_shards>._SUCCESS`` marker. ``split`` is the
manifest's file name without ``.tsv``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging

import numpy as np
from tqdm import tqdm

from mhubert import storage
from mhubert.artifacts.manifest import Manifest
from mhubert.errors import BadInput

log = logging.getLogger(__name__)


def shard_range(total: int, num_shards: int, shard: int) -> tuple[int, int]:
    """[start, end) of ``shard`` as fairseq's get_shard_range."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise BadInput(f"--shard must be in [0, {num_shards}) and --num-shards >= 1, "
                       f"got shard {shard} of {num_shards}")
    return round(total / num_shards * shard), round(total / num_shards * (shard + 1))


def dump_mfcc(manifest_url: str, out: str, shard: int = 0, num_shards: int = 1,
              batch_utterances: int = 32, progress: bool = True) -> dict:
    """Extract MFCCs of the shard's utterances and publish ``.npy``/``.len`` under ``out``."""
    from mhubert.audio import load
    from mhubert.features.mfcc import DIM, FRAME_RATE, mfcc_batch

    m = Manifest.read(manifest_url)
    start, end = shard_range(len(m), num_shards, shard)
    split = storage.basename(manifest_url)
    split = split[:-4] if split.endswith(".tsv") else split
    stem = storage.join(out, f"{split}_{shard}_{num_shards}")
    feats: list[np.ndarray] = []
    lengths: list[int] = []
    bar = tqdm(total=end - start, desc=f"mfcc {shard}/{num_shards}", unit="utt", disable=not progress)
    for s in range(start, end, batch_utterances):
        idx = range(s, min(end, s + batch_utterances))
        wavs = [load(m.url_of(i)) for i in idx]
        for f in mfcc_batch(wavs):
            feats.append(f.numpy().astype(np.float32))
            lengths.append(int(f.shape[0]))
        bar.update(len(idx))
    bar.close()
    arr = np.concatenate(feats) if feats else np.zeros((0, DIM), np.float32)
    buf = io.BytesIO()
    np.save(buf, arr)
    storage.remove(stem + "._SUCCESS")
    storage.atomic_write(stem + ".npy", buf.getvalue())
    storage.atomic_write_text(stem + ".len", "".join(f"{n}\n" for n in lengths))
    info = {"utterances": len(lengths), "frames": int(arr.shape[0]), "dim": DIM, "rate_hz": FRAME_RATE,
            "range": [start, end]}
    storage.atomic_write_json(stem + "._SUCCESS", info)
    return info


def _mfcc(args: argparse.Namespace) -> int:
    info = dump_mfcc(args.manifest, args.out, args.shard, args.num_shards,
                     progress=not args.quiet)
    print(json.dumps(info))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    features = subparsers.add_parser("features", help="dump frame features for clustering")
    sub = features.add_subparsers(dest="features_command", metavar="ACTION")
    p = sub.add_parser("mfcc", help="39-d Kaldi MFCC + deltas at 100 Hz (fairseq .npy/.len)")
    p.add_argument("--manifest", required=True, help="manifest URL")
    p.add_argument("--out", required=True, help="output directory URL")
    p.add_argument("--shard", type=int, default=0, help="this shard's index (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_mfcc)
