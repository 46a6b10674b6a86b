"""The training loader over S3 with 20 ms added per request: utterances/s and audio-s/s decoded by
``EpochPlanner.loader`` (base batching: 2.8M samples per GPU batch, crops ≤ 250,000 samples) from
Common Voice-like mp3 and MLS-like opus clips, against what one GPU consumes at that batch.

    python benchmarks/bench_loader.py --utterances 400 --workers 6 --io-threads 16 --batches 30

The GPU side is the anchor in ../shared/reference/performance-anchors.md: a base pretraining step of
batch 11 x 250,000 samples on one H200 takes 0.303 s (567 audio-s/s). Everything runs on 127.0.0.1
(moto + the tests' latency proxy).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import sys
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

GPU_AUDIO_S_PER_S = 11 * 250_000 / 16000 / 0.303  # base step on one H200 (performance anchors)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clip(i: int) -> tuple[str, bytes, int]:
    rng = np.random.default_rng(i)
    if i % 2:  # Common Voice: mp3, 4-8 s
        sec, fmt, sub, sr, ext = 4 + 4 * rng.random(), "MP3", "MPEG_LAYER_III", 16000, "mp3"
    else:      # MLS: opus at 48 kHz, 10-20 s
        sec, fmt, sub, sr, ext = 10 + 10 * rng.random(), "OGG", "OPUS", 48000, "opus"
    n = int(sec * sr)
    t = np.arange(n) / sr
    x = (0.2 * np.sin(2 * np.pi * (150 + 300 * rng.random()) * t) + 0.02 * rng.standard_normal(n))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format=fmt, subtype=sub)
    data = buf.getvalue()
    frames = sf.info(io.BytesIO(data)).frames
    return f"c/{i:06d}.{ext}", data, int(round(frames * 16000 / sr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=400)
    ap.add_argument("--workers", type=int, default=6, help="DataLoader workers (base preset: 6)")
    ap.add_argument("--io-threads", type=int, default=16)
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import s3fs
    from helpers.s3proxy import S3Proxy
    from moto.server import ThreadedMotoServer

    from mhubert import storage
    from mhubert.artifacts import Labels, dictionary_text
    from mhubert.artifacts.manifest import Manifest
    from mhubert.data.dataset import DataConfig, EpochPlanner, LabeledAudio

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_port())
    server.start()
    moto = f"http://127.0.0.1:{server._port}"
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=moto)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto})
    fs.mkdir("bench")
    clips = [_clip(i) for i in range(args.utterances)]
    fs.pipe({f"bench/audio/{p}": d for p, d, _ in clips})
    n = np.array([k for _, _, k in clips], dtype=np.int64)
    langs = ["sv" if i % 2 else "pl" for i in range(len(clips))]
    ds = ["commonvoice" if i % 2 else "mls" for i in range(len(clips))]
    Manifest.from_columns("s3://bench/audio", [p for p, _, _ in clips], n, langs, ds).write(
        "s3://bench/manifest.tsv")
    n_lab = n * 50 // 16000
    offsets = np.concatenate([[0], np.cumsum(n_lab)]).astype(np.int64)
    for name, arr in (("labels.npy", np.zeros(int(offsets[-1]), np.uint16)), ("offsets.npy", offsets)):
        b = io.BytesIO()
        np.save(b, arr)
        storage.atomic_write(f"s3://bench/labels/{name}", b.getvalue())
    storage.atomic_write_text("s3://bench/labels/dict.km.txt", dictionary_text(100))
    Labels("s3://bench/labels").commit({"num_clusters": 100, "label_rate": 50})

    cfg = DataConfig(num_workers=args.workers, io_threads=args.io_threads, prefetch_batches=args.prefetch)
    with S3Proxy(moto, latency_s=args.latency_ms / 1000) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
        s3fs.S3FileSystem.clear_instance_cache()
        data = LabeledAudio(Manifest.read("s3://bench/manifest.tsv"), "s3://bench/labels", cfg)
        planner = EpochPlanner(data, seed=0)
        utts = audio_s = batches = 0
        t0 = None
        for epoch in range(1000):
            _, loader = planner.loader(epoch)
            for b in loader:
                if t0 is None:      # the first batch pays the workers' start-up
                    t0 = time.perf_counter()
                    continue
                utts += b["wav"].shape[0]
                audio_s += b["n_samples"] / 16000
                batches += 1
                if batches >= args.batches:
                    break
            if batches >= args.batches:
                break
        dt = time.perf_counter() - t0
        requests = proxy.forwarded
    server.stop()
    print(json.dumps({"utterances": args.utterances, "workers": args.workers,
                      "io_threads": args.io_threads, "latency_ms": args.latency_ms,
                      "batches": batches, "seconds": round(dt, 2),
                      "utterances_per_s": round(utts / dt, 1), "audio_s_per_s": round(audio_s / dt, 1),
                      "batches_per_s": round(batches / dt, 2),
                      "gpu_audio_s_per_s": round(GPU_AUDIO_S_PER_S, 1),
                      "fed_ratio": round(audio_s / dt / GPU_AUDIO_S_PER_S, 2), "requests": requests,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
