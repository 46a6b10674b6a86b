"""Sharded, idempotent label assignment over a manifest, and the merge into one labels directory.

Shard i of n covers the contiguous manifest range ``[N·i//n, N·(i+1)//n)``. Features are computed
batch by batch and labelled in memory (never written out); only labels are kept, 2 bytes a frame.
A shard publishes, atomically and in this order::

    shard-XXXXX-of-YYYYY.km     fairseq text: one line of space-separated ids per utterance
    shard-XXXXX-of-YYYYY.npz    labels (uint16, flat) + lengths (int64)
    shard-XXXXX-of-YYYYY.done   JSON marker, last

A shard whose marker exists is skipped; a shard killed midway has published nothing. ``merge``
writes ``labels.km``, ``labels.npy`` (uint16 flat), ``offsets.npy`` (int64, N+1), ``dict.km.txt``
and ``_SUCCESS`` (JSON: label_rate, num_clusters, num_utterances, num_frames) last.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile

import numpy as np
import torch
from tqdm import tqdm

from mhubert import storage
from mhubert.clustering import index as cindex
from mhubert.clustering.features import FeatureExtractor, FeatureSpec
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

MAX_CLUSTERS = 65535


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def shard_range(total: int, num_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous manifest range ``[lo, hi)`` of shard ``shard`` of ``num_shards``."""
    if num_shards < 1:
        raise BadInput(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise BadInput(f"--shard must be in [0, {num_shards - 1}], got {shard}")
    return total * shard // num_shards, total * (shard + 1) // num_shards


def km_lines(labels: list[np.ndarray]) -> str:
    """fairseq ``.km`` text: one line of space-separated ids per utterance."""
    return "".join(" ".join(map(str, lab.tolist())) + "\n" for lab in labels)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def assign_shard(manifest_url: str, labels_dir: str, index_url: str, spec: FeatureSpec,
                 shard: int = 0, num_shards: int = 1, exact: bool = False,
                 progress: bool = True) -> dict:
    """Label shard ``shard`` of ``num_shards`` of the manifest with the index at ``index_url``.

    ``exact``: exact nearest coarse centroid (after the OPQ rotation) instead of the HNSW top-1.
    Returns the shard's marker info; a finished shard is a no-op.
    """
    from mhubert.corpus.manifest import Manifest

    name = shard_name(shard, num_shards)
    done_url = storage.join(labels_dir, name + ".done")
    manifest = Manifest.read(manifest_url)
    lo, hi = shard_range(len(manifest), num_shards, shard)
    if storage.exists(done_url):
        log.info("%s is already done", name)
        return storage.read_json(done_url)
    ci = cindex.load(index_url)
    k = ci.num_clusters
    if k > MAX_CLUSTERS:
        raise BadInput(f"index has {k} clusters; uint16 labels hold at most {MAX_CLUSTERS}")
    ex = FeatureExtractor(spec)
    if ex.dim != ci.dim:
        raise BadInput(f"{spec.source} features are {ex.dim}-d but the index {index_url} is {ci.dim}-d")
    on_gpu = ex.device.type == "cuda"
    labels: list[np.ndarray] = []
    bar = tqdm(total=hi - lo, unit="utt", desc=name, disable=not progress)
    for ids, feats in ex.iter_manifest(manifest, range(lo, hi), as_tensors=True):
        sizes = [f.shape[0] for f in feats]
        x = torch.cat(feats) if feats else torch.zeros(0, ex.dim)
        if on_gpu:
            lab = ci.label_torch(x).cpu().numpy()
        else:
            lab = ci.label(x.numpy(), exact=exact)
        for i, part in zip(ids, np.split(lab, np.cumsum(sizes)[:-1]), strict=True):
            want = ex.num_frames(manifest[i].n_samples)
            if len(part) != want:
                raise BadInput(f"{manifest.url_of(i)}: {len(part)} labels but its "
                               f"{manifest[i].n_samples} samples give {want} frames at "
                               f"{spec.label_rate} Hz")
            labels.append(part.astype(np.uint16))
        bar.update(len(ids))
    bar.close()
    lengths = np.asarray([len(x) for x in labels], dtype=np.int64)
    flat = np.concatenate(labels) if labels else np.zeros(0, dtype=np.uint16)
    storage.atomic_write_text(storage.join(labels_dir, name + ".km"), km_lines(labels))
    storage.atomic_write(storage.join(labels_dir, name + ".npz"), _npz_bytes(labels=flat, lengths=lengths))
    info = {"shard": shard, "num_shards": num_shards, "start": lo, "stop": hi,
            "num_utterances": hi - lo, "num_frames": int(flat.size), "num_clusters": k,
            "label_rate": spec.label_rate, "index": index_url, "manifest": manifest_url,
            "features": spec.to_dict(), "exact": exact}
    storage.atomic_write_json(done_url, info)
    return info


def _publish(local: str, url: str) -> None:
    dest = storage.local_path(url)
    if dest is not None:
        os.replace(local, dest)
    else:
        storage.upload_file(local, url)
        os.remove(local)


def merge(labels_dir: str, num_shards: int) -> dict:
    """Concatenate the shards' labels in manifest order; ``_SUCCESS`` last. No-op once committed."""
    if storage.is_committed(labels_dir):
        return storage.read_json(storage.join(labels_dir, storage.SUCCESS))
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    missing = [n for n in names if not storage.exists(storage.join(labels_dir, n + ".done"))]
    if missing:
        raise BadInput(f"{len(missing)} of {num_shards} shards are not done in {labels_dir}: "
                       f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    infos = [storage.read_json(storage.join(labels_dir, n + ".done")) for n in names]
    for key in ("label_rate", "num_clusters", "manifest"):
        if len({str(i[key]) for i in infos}) != 1:
            raise BadInput(f"shards in {labels_dir} disagree on {key}; re-run them with one setting")
    for a, b in zip(infos, infos[1:], strict=False):
        if a["stop"] != b["start"]:
            raise BadInput(f"shards in {labels_dir} do not tile the manifest ({a['stop']} != {b['start']})")
    num_frames = sum(int(i["num_frames"]) for i in infos)
    k = int(infos[0]["num_clusters"])
    local = storage.local_path(labels_dir)
    if local is not None:
        os.makedirs(local, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".merge-", dir=local)
    try:
        flat = np.lib.format.open_memmap(os.path.join(stage, "labels.npy"), mode="w+",
                                         dtype=np.uint16, shape=(num_frames,))
        offsets = [np.zeros(1, dtype=np.int64)]
        pos = 0
        with open(os.path.join(stage, "labels.km"), "wb") as km:
            for n in tqdm(names, desc="merge", unit="shard"):
                z = np.load(io.BytesIO(storage.read_bytes(storage.join(labels_dir, n + ".npz"))))
                lab, lengths = z["labels"], z["lengths"]
                flat[pos:pos + lab.size] = lab
                offsets.append(pos + np.cumsum(lengths))
                pos += lab.size
                km.write(storage.read_bytes(storage.join(labels_dir, n + ".km")))
        flat.flush()
        del flat
        off = np.concatenate(offsets).astype(np.int64)
        np.save(os.path.join(stage, "offsets.npy"), off)
        for f in ("labels.npy", "offsets.npy", "labels.km"):
            _publish(os.path.join(stage, f), storage.join(labels_dir, f))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    storage.atomic_write_text(storage.join(labels_dir, "dict.km.txt"), "".join(f"{i} 1\n" for i in range(k)))
    info = {"label_rate": int(infos[0]["label_rate"]), "num_clusters": k,
            "num_utterances": int(off.size - 1), "num_frames": int(num_frames),
            "num_shards": num_shards, "manifest": infos[0]["manifest"], "index": infos[0]["index"]}
    storage.write_marker(labels_dir, info)
    return info


def read_labels(labels_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint16 labels, offsets int64 (N+1,)) of a merged labels directory; utterance i has
    ``flat[offsets[i]:offsets[i+1]]``. Local files are memory-mapped."""
    if not storage.is_committed(labels_dir):
        raise BadInput(f"no merged labels at {labels_dir} (run `mhubert cluster merge`)")
    out = []
    for f in ("labels.npy", "offsets.npy"):
        url = storage.join(labels_dir, f)
        p = storage.local_path(url)
        out.append(np.load(p, mmap_mode="r") if p is not None
                   else np.load(io.BytesIO(storage.read_bytes(url))))
    flat, offsets = out
    if offsets.size == 0 or int(offsets[-1]) != flat.size:
        raise BadInput(f"{labels_dir}: offsets end at {int(offsets[-1]) if offsets.size else 0} "
                       f"but there are {flat.size} labels")
    return flat, offsets


def label_info(labels_dir: str) -> dict:
    """The merged directory's ``_SUCCESS`` JSON (label_rate, num_clusters, ...)."""
    if not storage.is_committed(labels_dir):
        raise BadInput(f"no merged labels at {labels_dir} (run `mhubert cluster merge`)")
    return storage.read_json(storage.join(labels_dir, storage.SUCCESS))
