"""Audio -> labels: our one pass (``mhubert cluster assign``: layer-L features labelled in memory)
against fairseq HuBERT's two passes, on the same audio, model, layer and centroids, in one run.

fairseq (``examples/hubert/simple_kmeans``), emulated step by step with the same model code
(fairseq itself does not run on Python 3.11):

1. ``dump_hubert_feature.py``: one utterance at a time, read the wav, layer-norm it when the task
   normalizes, run the model to layer L (``max_chunk`` = 1,600,000 samples), append the (T, D)
   float32 features to ``{split}_0_1.npy`` and T to ``{split}_0_1.len``;
2. ``dump_km_label.py``: memory-map the ``.npy``, and per utterance take ``ApplyKmeans``'s numpy
   argmin of ``‖x‖² − 2·x·C + ‖C‖²`` over the k-means centroids; write one ``.km`` line each.

Ours: :func:`mhubert.clustering.assign.assign_shard` (batches of ``--batch-size`` utterances,
features never written) with the index's labels (``--label-method``: ``hnsw`` as published, or
``exact``), then ``merge``. The centroids fairseq applies are the index's original-space centroids,
so agreement is printed too. Figures: audio seconds labelled per wall second, bytes written, their
ratios (our wall time includes loading the model and the index; fairseq's excludes them). Data:
SYNTHETIC audio (tones and noise) of ``--utt-seconds`` per utterance; the model is a randomly
initialised ``tiny`` or ``base`` HuBERT, or ``--model URL``; the index is fitted (not
timed) on the first utterances' features.

    python benchmarks/bench_audio_labels.py --model base --layer 9 --seconds 600
    python benchmarks/bench_audio_labels.py --seconds 20 --k 20   # a quick check (tiny model)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MAX_CHUNK = 1_600_000    # fairseq HubertFeatureReader.max_chunk


def write_corpus(root: str, seconds: float, utt_seconds: float, seed: int = 0) -> str:
    from mhubert import storage
    from mhubert.artifacts import Manifest, ManifestEntry
    from mhubert.audio import encode_wav
    from mhubert.constants import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    entries, total, i = [], 0.0, 0
    while total < seconds:
        n = int(utt_seconds * SAMPLE_RATE * rng.uniform(0.7, 1.3))
        t = np.arange(n) / SAMPLE_RATE
        hz = rng.uniform(120, 2000)
        wav = 0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        wav = (wav + 0.05 * rng.standard_normal(n)).astype(np.float32)
        path = f"synth/xx/u{i:05d}.wav"
        storage.atomic_write(storage.join(root, "audio", path), encode_wav(wav))
        entries.append(ManifestEntry(path, n, "xx", "synth"))
        total += n / SAMPLE_RATE
        i += 1
    url = storage.join(root, "train.tsv")
    Manifest(storage.join(root, "audio"), entries).write(url)
    return url


def fairseq_dump_features(model, manifest, layer: int, normalize: bool, out_stem: str) -> float:
    """Pass 1 (dump_hubert_feature.py): features of every utterance to .npy + .len; returns seconds."""
    from mhubert.audio import load

    t0 = time.perf_counter()
    feats, lens = [], []
    with torch.no_grad():
        for i in range(len(manifest)):
            x = load(manifest.url_of(i)).float()[None]
            if normalize:
                x = F.layer_norm(x, x.shape)
            parts = []
            for s in range(0, x.size(1), MAX_CHUNK):
                f, _ = model.extract_layer(x[:, s:s + MAX_CHUNK], None, layer)
                parts.append(f[0])
            f = torch.cat(parts).numpy().astype(np.float32)
            feats.append(f)
            lens.append(len(f))
    arr = np.concatenate(feats)
    np.save(out_stem + ".npy", arr)
    with open(out_stem + ".len", "w") as fh:
        fh.write("".join(f"{n}\n" for n in lens))
    return time.perf_counter() - t0


def fairseq_dump_labels(out_stem: str, centroids: np.ndarray, km_path: str) -> tuple[float, np.ndarray]:
    """Pass 2 (dump_km_label.py): ApplyKmeans per utterance over the memory-mapped features."""
    t0 = time.perf_counter()
    c_t = np.ascontiguousarray(centroids.T)
    c_norm = (c_t ** 2).sum(0, keepdims=True)
    feat = np.load(out_stem + ".npy", mmap_mode="r")
    with open(out_stem + ".len") as fh:
        lens = [int(ln) for ln in fh]
    offs = np.concatenate([[0], np.cumsum(lens)])
    out = []
    with open(km_path, "w") as fh:
        for i in range(len(lens)):
            x = np.asarray(feat[offs[i]:offs[i + 1]])
            dist = (x ** 2).sum(1, keepdims=True) - 2 * np.matmul(x, c_t) + c_norm
            lab = np.argmin(dist, axis=1)
            out.append(lab)
            fh.write(" ".join(map(str, lab)) + "\n")
    return time.perf_counter() - t0, np.concatenate(out)


def tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny | base (random init) | a model URL")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=120.0, help="audio to label")
    ap.add_argument("--utt-seconds", type=float, default=10.0)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--index-factory", default="OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr")
    ap.add_argument("--label-method", default="hnsw", choices=("hnsw", "exact"))
    ap.add_argument("--batch-size", type=int, default=8, help="our utterances per feature batch")
    ap.add_argument("--fit-utterances", type=int, default=8)
    ap.add_argument("--workdir", help="where to write (default: a temporary directory)")
    args = ap.parse_args()

    from bench_assign import machine

    from mhubert.artifacts import Index, Labels, Manifest
    from mhubert.clustering import ClusteringConfig, kmeans
    from mhubert.clustering import assign as cassign
    from mhubert.clustering import index as cindex
    from mhubert.clustering.quality import agreement
    from mhubert.features.spec import FeatureSpec
    from mhubert.model import hubert_base, hubert_tiny, load_model
    from mhubert.model.convert import save_checkpoint_model

    print(f"machine: {machine()}", flush=True)
    threads = kmeans.use_all_cores()
    torch.set_num_threads(threads)
    work = args.workdir or tempfile.mkdtemp(prefix="bench-audio-labels-")
    murl = write_corpus(work, args.seconds, args.utt_seconds)
    manifest = Manifest.read(murl)
    audio_s = sum(e.seconds for e in manifest)
    if args.model in ("tiny", "base"):
        torch.manual_seed(0)
        model_url = os.path.join(work, f"{args.model}.pt")
        save_checkpoint_model((hubert_tiny if args.model == "tiny" else hubert_base)().eval(), model_url)
    else:
        model_url = args.model
    model = load_model(model_url).eval()
    spec = FeatureSpec("hubert", model=model_url, layer=args.layer, batch_size=args.batch_size,
                       device="cpu")
    # the index, fitted on the first utterances' features (not timed)
    with torch.no_grad():
        fit_x = np.concatenate([model.extract_layer(
            F.layer_norm(w := load_wav(manifest, i), w.shape)[None], None, args.layer)[0][0].numpy()
            for i in range(min(args.fit_utterances, len(manifest)))])
    ci = cindex.train(fit_x, ClusteringConfig(num_clusters=args.k, index_factory=args.index_factory,
                                              opq_niter=10, kmeans_device="cpu"))
    art = Index(os.path.join(work, "clu"))
    cindex.save(ci, art)
    art.commit({"mode": ci.mode}, settings={"bench": args.k})
    print(f"{len(manifest)} utterances, {audio_s:.0f} s of audio; {args.model} layer {args.layer}; "
          f"K={args.k} fitted on {len(fit_x)} frames; {threads} threads", flush=True)

    stem = os.path.join(work, "fairseq", "train_0_1")
    os.makedirs(os.path.dirname(stem))
    t1 = fairseq_dump_features(model, manifest, args.layer, True, stem)
    t2, fs_labels = fairseq_dump_labels(stem, ci.centroids, os.path.join(work, "fairseq", "train_0_1.km"))
    fs_bytes = tree_bytes(os.path.join(work, "fairseq"))
    print(f"fairseq: features {t1:.1f} s + labels {t2:.1f} s, {fs_bytes / 1e6:.1f} MB written", flush=True)

    labels = os.path.join(work, "labels")
    t0 = time.perf_counter()
    cassign.assign_shard(murl, labels, art.index_url, spec, 0, 1,
                         cfg=ClusteringConfig(label_method=args.label_method), progress=False)
    cassign.merge(labels, 1, progress=False)
    t_ours = time.perf_counter() - t0
    ours_bytes = tree_bytes(labels)
    flat, _ = Labels(labels).read()
    t_fs = t1 + t2
    print(f"\n{'':34s} {'wall s':>8s} {'audio-s/s':>10s} {'MB written':>11s}")
    print(f"{'fairseq two passes (feat + km)':34s} {t_fs:8.1f} {audio_s / t_fs:10.1f} {fs_bytes / 1e6:11.2f}")
    print(f"{'ours one pass (' + args.label_method + ')':34s} {t_ours:8.1f} {audio_s / t_ours:10.1f} "
          f"{ours_bytes / 1e6:11.2f}")
    print(f"speed-up {t_fs / t_ours:.2f}x, bytes written {fs_bytes / max(1, ours_bytes):.1f}x fewer; "
          f"label agreement with fairseq's {agreement(np.asarray(flat), fs_labels):.4f}")
    print(f"machine after: {machine()}")


def load_wav(manifest, i: int) -> torch.Tensor:
    from mhubert.audio import load

    return load(manifest.url_of(i)).float()


if __name__ == "__main__":
    main()
