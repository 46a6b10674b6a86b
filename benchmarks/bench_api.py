"""Embedding service vs transformers' HubertModel, same weights and audio, in one run, per backend.

Anchor: ``transformers.HubertModel`` loaded from our ``save_hf`` export of a random model, called once
per request (decode + normalise + full forward + mean pool of the last layer: the same work the
service does). Ours: ``POST /v1/embeddings`` (last layer, mean) over HTTP to a real uvicorn on
127.0.0.1 in this process, micro-batching on, for each ``--backends`` entry (torch, onnx, onnx-int8).

Per backend and clip length: single-request latency (median of interleaved runs) and its ratio to
transformers (target <= 0.7x), the error against transformers (max |diff| and min cosine of the pooled
vectors); then throughput with ``--clients`` concurrent clients against transformers run
sequentially and with one thread per client (stretch target >= 2x).

    python benchmarks/bench_api.py                                   # base, CPU, 4 s and 10 s, 8 clients
    python benchmarks/bench_api.py --backends torch onnx onnx-int8 --threads 2
    python benchmarks/bench_api.py --preset tiny --seconds 1 --latency-reps 1 --clients 2   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import torch

from api.app import create_app
from api.background import serve_in_thread
from api.settings import Settings
from mhubert.audio import decode, encode_wav
from mhubert.constants import SAMPLE_RATE
from mhubert.model import HubertConfig, HubertModel, load_model, save_hf


def _burst(base: str, bodies: list[bytes], clients: int, per_client: int) -> float:
    async def run() -> float:
        async with httpx.AsyncClient(base_url=base, timeout=600,
                                     limits=httpx.Limits(max_connections=clients)) as ac:
            async def client(i: int) -> None:
                for _ in range(per_client):
                    (await ac.post("/v1/embeddings", content=bodies[i % len(bodies)])).raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*[client(i) for i in range(clients)])
            return time.perf_counter() - t0

    return asyncio.run(run())


def _mean_batch(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(metrics_text):
        if fam.name == "mhubert_batch_size":
            vals = {s.name: s.value for s in fam.samples}
            return vals["mhubert_batch_size_sum"] / max(1.0, vals["mhubert_batch_size_count"])
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--model", help="trained weights to use (e.g. the demo's serving/model) instead of a "
                                    "random --preset model: the approximate backends' errors on real weights")
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"],
                    choices=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--seconds", type=float, nargs="+", default=[4.0, 10.0], help="clip lengths")
    ap.add_argument("--latency-reps", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=2, help="requests per client in the throughput test")
    ap.add_argument("--throughput-seconds", type=float, default=4.0, help="clip of the throughput test")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both sides (0: default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    clips = {s: encode_wav(np.clip(0.1 * rng.standard_normal(int(s * SAMPLE_RATE)), -1, 1))
             for s in sorted({*args.seconds, args.throughput_seconds})}
    thr_bodies = [encode_wav(np.clip(0.1 * rng.standard_normal(int(args.throughput_seconds * SAMPLE_RATE)),
                                     -1, 1)) for _ in range(args.clients)]
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(load_model(args.model) if args.model else HubertModel(HubertConfig.preset(args.preset)), tmp)
        import transformers

        ref = transformers.HubertModel.from_pretrained(tmp).eval().to(device)
        amp = (torch.autocast(device.type, dtype=getattr(torch, args.dtype)) if args.dtype != "float32"
               else contextlib.nullcontext())

        def anchor(body: bytes) -> np.ndarray:
            wav = decode(body, SAMPLE_RATE, normalize=True)[None].to(device)
            with torch.inference_mode(), amp:
                out = ref(wav).last_hidden_state.mean(dim=1)
            return out.float().cpu().numpy()[0]

        total = args.clients * args.per_client
        t0 = time.perf_counter()
        for i in range(total):  # one model behind a lock: what a per-request server does
            anchor(thr_bodies[i % args.clients])
        thr_seq = total * args.throughput_seconds / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as ex:  # one thread per client sharing the model
            list(ex.map(anchor, [thr_bodies[i % args.clients] for i in range(total)]))
        thr_thr = total * args.throughput_seconds / (time.perf_counter() - t0)

        for backend in args.backends:
            settings = Settings(model_uri=tmp, eager_load=True, device=args.device, dtype=args.dtype,
                                backend=backend, num_threads=args.threads, max_batch_size=args.max_batch_size,
                                max_wait_ms=args.max_wait_ms, max_audio_s=max(60.0, *clips),
                                max_body_bytes=64 << 20, max_queue=4 * args.clients)
            with serve_in_thread(create_app(settings), start_timeout_s=600) as base, \
                    httpx.Client(base_url=base, timeout=600) as c:
                def ours(body: bytes) -> np.ndarray:
                    r = c.post("/v1/embeddings", content=body)
                    r.raise_for_status()
                    return np.array(r.json()["embeddings"][0])

                for sec in args.seconds:
                    body = clips[sec]
                    a, o = anchor(body), ours(body)  # also the warm-up
                    diff = float(np.abs(o - a).max())
                    cos = float((o @ a) / (np.linalg.norm(o) * np.linalg.norm(a)))
                    lat_ref, lat_ours = [], []
                    for _ in range(args.latency_reps):  # interleaved: both see the same machine load
                        t0 = time.perf_counter()
                        anchor(body)
                        lat_ref.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        ours(body)
                        lat_ours.append(time.perf_counter() - t0)
                    mr, mo = statistics.median(lat_ref), statistics.median(lat_ours)
                    rows.append(f"| {backend} | {sec:g} s | {mr:.3f} | {mo:.3f} | {mo / mr:.2f}x | "
                                f"{diff:.1e} | {cos:.5f} |")
                wall = _burst(base, thr_bodies, args.clients, args.per_client)
                thr = total * args.throughput_seconds / wall
                mean_batch = _mean_batch(httpx.get(base + "/metrics").text)
                rows.append(f"| {backend} | {args.clients} clients x {args.per_client} x "
                            f"{args.throughput_seconds:g} s | throughput {thr:.2f} audio-s/s | "
                            f"vs sequential {thr / thr_seq:.2f}x | vs {args.clients} threads "
                            f"{thr / thr_thr:.2f}x | mean batch {mean_batch:.1f} | |")

    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    cpu = cpu.split(":", 1)[-1].strip() or "unknown CPU"
    load = open("/proc/loadavg").read().split()[:3]
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else ""
    print(f"machine: {cpu}, {torch.get_num_threads()} threads {gpu}; load average {' '.join(load)}")
    print(f"{args.model or args.preset}, {args.device}/{args.dtype}; transformers throughput: "
          f"sequential {thr_seq:.2f}, "
          f"{args.clients} threads {thr_thr:.2f} audio-s/s")
    print("| backend | clip | transformers s | ours s | ratio (<= 0.7x) | max abs diff | cosine |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
