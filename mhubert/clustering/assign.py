"""Sharded, idempotent label assignment over a manifest, and the merge into one labels directory.

Shard i of n covers the contiguous manifest range ``[N·i//n, N·(i+1)//n)``. Features are computed
batch by batch and labelled in memory (never written out); only labels are kept, 2 bytes a frame.
The files and their order are :class:`mhubert.artifacts.Labels`'s (``write_shard``: ``.km``,
``.npz``, then the ``.done`` record last); a shard stopped midway (killed, or SIGTERM between two
batches) has published nothing.

Labels come from the method the config names (``clustering.label_method``, resolved against the
index by :meth:`ClusterIndex.resolve_method`), never from whatever the hardware offers: ``hnsw``
runs faiss's HNSW search on the CPU even when the features are on a GPU; ``exact`` runs the GEMM
argmin where the features are (CUDA: torch, else numpy). The method and the device are recorded in
each shard's ``.done`` and in the merged marker's info (``label_method``, ``label_device``).

A shard is reused only when its ``.done`` carries the fingerprint of the settings and inputs given
now (``decide``'s rule, per shard); ``merge`` commits the labels with the shards' common settings.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

import numpy as np
import torch
from tqdm import tqdm

from mhubert import storage
from mhubert.artifacts import MAX_CLUSTERS, Labels, Manifest, StaleArtifact, decide, dictionary_text
from mhubert.artifacts import marker as mk
from mhubert.artifacts.reuse import differences
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import index as cindex
from mhubert.clustering.inputs import feature_inputs, manifest_fingerprint
from mhubert.clustering.stop import check
from mhubert.errors import BadInput
from mhubert.features.featurizer import Featurizer
from mhubert.features.spec import FeatureSpec

log = logging.getLogger(__name__)


def shard_range(total: int, num_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous manifest range ``[lo, hi)`` of shard ``shard`` of ``num_shards``."""
    if num_shards < 1:
        raise BadInput(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise BadInput(f"--shard must be in [0, {num_shards - 1}], got {shard}")
    return total * shard // num_shards, total * (shard + 1) // num_shards


def index_fingerprint(index_url: str) -> str:
    """The committed Index's fingerprint, or the sha256 of any other faiss file (e.g. the published
    index)."""
    art = cindex.committed_index(index_url)
    if art is not None and art.fingerprint:
        return art.fingerprint
    if not storage.exists(index_url):
        raise BadInput(f"faiss index not found: {index_url}")
    return mk.hash_url(index_url).sha256


def assign_settings(spec: FeatureSpec, cfg: ClusteringConfig, num_shards: int) -> dict:
    return {"clustering": cfg.assign_settings(), "features": spec.to_dict(), "num_shards": num_shards}


def assign_inputs(manifest_url: str, index_url: str, spec: FeatureSpec) -> dict:
    return {"manifest": manifest_fingerprint(manifest_url), "index": index_fingerprint(index_url),
            **feature_inputs(spec)}


def _label_batch(ci: cindex.ClusterIndex, x: torch.Tensor, method: str) -> tuple[np.ndarray, str]:
    """Labels of one feature batch by ``method`` (resolved), and the device they were computed on."""
    if method == "exact" and x.device.type == "cuda":
        return ci.label_torch(x).cpu().numpy(), "cuda"
    return ci.label(x.detach().cpu().numpy(), method), "cpu"


def assign_shard(manifest_url: str, labels_dir: str, index_url: str, spec: FeatureSpec,
                 shard: int = 0, num_shards: int = 1, cfg: ClusteringConfig | None = None,
                 progress: bool = True, on_change: str = "stop",
                 stop: threading.Event | None = None) -> dict:
    """Label shard ``shard`` of ``num_shards`` of the manifest with the index at ``index_url``, by
    ``cfg.label_method``. Returns the shard's record; a shard done with the same settings and inputs
    is reused, one done otherwise stops (``on_change="force"`` relabels it)."""
    cfg = cfg or ClusteringConfig()
    labels = Labels(labels_dir)
    manifest = Manifest.read(manifest_url)
    lo, hi = shard_range(len(manifest), num_shards, shard)
    settings = assign_settings(spec, cfg, num_shards)
    inputs = assign_inputs(manifest_url, index_url, spec)
    if decide(labels, settings, inputs, on_change) == "reuse":
        log.info("%s is already merged with these settings", labels_dir)
        return labels.shard_done(shard, num_shards) or labels.info
    want = mk.fingerprint(Labels.kind, settings, inputs)
    done = labels.shard_done(shard, num_shards)
    name = labels.shard_url(shard, num_shards, "")
    if done is not None:
        if done.get("fingerprint") == want:
            log.info("%s is already done", name)
            return done
        if on_change != "force":
            diff = differences(done.get("settings", {}), settings) + differences(
                done.get("inputs", {}), inputs)
            raise StaleArtifact(f"{name} was labelled with other settings or inputs "
                                f"({'; '.join(diff[:4]) or 'an older record'}); pass --force to "
                                "relabel it, or use another labels directory")
        storage.remove(labels.shard_url(shard, num_shards, ".done"))   # never a new .km under an old .done
    ci = cindex.open_index(index_url)
    k = ci.num_clusters
    if k > MAX_CLUSTERS:
        raise BadInput(f"index has {k} clusters; uint16 labels hold at most {MAX_CLUSTERS}")
    method = ci.resolve_method(cfg.label_method)
    ex = Featurizer(spec)
    if ex.dim != ci.dim:
        raise BadInput(f"{spec.source} features are {ex.dim}-d but the index {index_url} is {ci.dim}-d")
    done_parts: dict[int, np.ndarray] = {}
    devices: set[str] = set()
    bar = tqdm(total=hi - lo, unit="utt", desc=storage.basename(name), disable=not progress)
    # length-bucketed batches (labels are put back in manifest order below)
    for ids, feats in ex.iter_manifest(manifest, range(lo, hi), as_tensors=True, by_length=True):
        check(stop, f"while labelling {name} (the shard is dropped whole)")
        sizes = [f.shape[0] for f in feats]
        x = torch.cat(feats) if feats else torch.zeros(0, ex.dim)
        lab, dev = _label_batch(ci, x, method)
        devices.add(dev)
        for i, part in zip(ids, np.split(lab, np.cumsum(sizes)[:-1]), strict=True):
            frames = ex.num_frames(manifest[i].n_samples)
            if len(part) != frames:
                raise BadInput(f"{manifest.url_of(i)}: {len(part)} labels but its "
                               f"{manifest[i].n_samples} samples give {frames} frames at "
                               f"{ex.frame_rate} Hz")
            done_parts[i] = part.astype(np.uint16)
        bar.update(len(ids))
    bar.close()
    out = [done_parts[i] for i in range(lo, hi)]
    info = {"shard": shard, "num_shards": num_shards, "start": lo, "stop": hi,
            "num_utterances": hi - lo, "num_frames": int(sum(len(p) for p in out)), "num_clusters": k,
            "label_rate": ex.frame_rate, "index": index_url, "manifest": manifest_url,
            "features": ex.describe(), "label_method": method,
            "label_device": ",".join(sorted(devices)) or "cpu",
            "settings": settings, "inputs": inputs, "fingerprint": want}
    return labels.write_shard(shard, num_shards, out, info)


def _publish(local: str, url: str) -> mk.FileRecord:
    rec = mk.hash_url(local)
    dest = storage.local_path(url)
    if dest is not None:
        os.replace(local, dest)
    else:
        storage.upload_file(local, url)
        os.remove(local)
    return rec


def _common(infos: list[dict], key: str, labels_dir: str):
    values = {mk.fingerprint("x", {"v": i.get(key)}, None) for i in infos}
    if len(values) != 1:
        raise BadInput(f"shards in {labels_dir} disagree on {key}; re-run them with one setting "
                       "(--force)")
    return infos[0].get(key)


def merge(labels_dir: str, num_shards: int, on_change: str = "stop", progress: bool = True) -> dict:
    """Concatenate the shards' labels in manifest order and commit them (marker last). Labels
    merged from shards with the same settings and inputs are reused."""
    labels = Labels(labels_dir)
    dones = [labels.shard_done(i, num_shards) for i in range(num_shards)]
    missing = [labels.shard_url(i, num_shards, "").rsplit("/", 1)[-1]
               for i, d in enumerate(dones) if d is None]
    if missing:
        raise BadInput(f"{len(missing)} of {num_shards} shards are not done in {labels_dir}: "
                       f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    infos: list[dict] = dones  # type: ignore[assignment]
    settings = _common(infos, "settings", labels_dir) or {}
    inputs = _common(infos, "inputs", labels_dir) or {}
    for key in ("label_rate", "num_clusters", "manifest", "label_method"):
        _common(infos, key, labels_dir)
    if decide(labels, settings, inputs, on_change) == "reuse":
        return labels.info
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
            for i in tqdm(range(num_shards), desc="merge", unit="shard", disable=not progress):
                lab, lengths = labels.read_shard(i, num_shards)
                flat[pos:pos + lab.size] = lab
                offsets.append(pos + np.cumsum(lengths))
                pos += lab.size
                km.write(storage.read_bytes(labels.shard_url(i, num_shards, ".km")))
        flat.flush()
        del flat
        off = np.concatenate(offsets).astype(np.int64)
        np.save(os.path.join(stage, "offsets.npy"), off)
        for f in ("labels.npy", "offsets.npy", "labels.km"):
            labels.record(f, _publish(os.path.join(stage, f), labels.path(f)))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    labels.write_text("dict.km.txt", dictionary_text(k))
    info = {"label_rate": int(infos[0]["label_rate"]), "num_clusters": k,
            "num_utterances": int(off.size - 1), "num_frames": int(num_frames),
            "num_shards": num_shards, "manifest": infos[0]["manifest"], "index": infos[0]["index"],
            "features": infos[0].get("features"), "label_method": infos[0]["label_method"],
            "label_device": ",".join(sorted({i.get("label_device", "cpu") for i in infos}))}
    labels.commit(info, settings=settings, inputs=inputs)
    return info
