"""Embedding service vs transformers' HubertModel, same weights and audio, in one run.

Anchor: ``transformers.HubertModel`` loaded from our ``save_hf`` export of a random base-size model,
called once per request (decode + normalise + forward + mean pool, the same work the service does).
Ours: ``POST /v1/embeddings`` over HTTP to a real uvicorn on 127.0.0.1 in this process (micro-batching
on). Measures single-request latency (median) and throughput with N concurrent clients, prints ratios.

    python benchmarks/bench_api.py                       # CPU, 4 s audio, 8 clients
    python benchmarks/bench_api.py --device cuda --seconds 10 --clients 16 --dtype float16
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
from mhubert.model import HubertConfig, HubertModel, save_hf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--seconds", type=float, default=4.0, help="audio per request")
    ap.add_argument("--latency-reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=1, help="requests per client in the throughput test")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    args = ap.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        save_hf(HubertModel(HubertConfig.preset(args.preset)), tmp)
        import transformers

        ref = transformers.HubertModel.from_pretrained(tmp).eval().to(device)
        amp = (torch.autocast(device.type, dtype=getattr(torch, args.dtype)) if args.dtype != "float32"
               else torch.autocast(device.type, enabled=False))

        def anchor(body: bytes) -> np.ndarray:
            wav = decode(body, 16000, normalize=True)[None].to(device)
            with torch.inference_mode(), amp:
                out = ref(wav).last_hidden_state.mean(dim=1)
            return out.float().cpu().numpy()

        rng = np.random.default_rng(0)
        n = int(args.seconds * 16000)
        bodies = [encode_wav(np.clip(0.1 * rng.standard_normal(n), -1, 1)) for _ in range(args.clients)]

        settings = Settings(model_uri=tmp, eager_load=True, device=args.device, dtype=args.dtype,
                            max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                            max_audio_s=max(60.0, args.seconds), max_body_bytes=64 << 20)
        base = stack.enter_context(serve_in_thread(create_app(settings), start_timeout_s=300))
        with httpx.Client(base_url=base, timeout=600) as c:
            def ours(body: bytes) -> np.ndarray:
                r = c.post("/v1/embeddings", content=body)
                r.raise_for_status()
                return np.array(r.json()["embeddings"][0])

            diff = float(np.abs(ours(bodies[0]) - anchor(bodies[0])[0]).max())  # also the warm-up
            lat_ref, lat_ours = [], []
            for _ in range(args.latency_reps):  # interleaved: both see the same machine load
                t0 = time.perf_counter()
                anchor(bodies[0])
                lat_ref.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ours(bodies[0])
                lat_ours.append(time.perf_counter() - t0)

        total = args.clients * args.per_client
        work = [bodies[i % args.clients] for i in range(total)]
        t0 = time.perf_counter()
        for b in work:  # one model behind a lock: what a per-request server does
            anchor(b)
        thr_seq = total * args.seconds / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as ex:  # one thread per client sharing the model
            list(ex.map(anchor, work))
        thr_ref = total * args.seconds / (time.perf_counter() - t0)

        async def burst() -> float:
            async with httpx.AsyncClient(base_url=base, timeout=600,
                                         limits=httpx.Limits(max_connections=args.clients)) as ac:
                async def client(i: int) -> None:
                    for _ in range(args.per_client):
                        (await ac.post("/v1/embeddings", content=bodies[i])).raise_for_status()

                t0 = time.perf_counter()
                await asyncio.gather(*[client(i) for i in range(args.clients)])
                return time.perf_counter() - t0

        thr_ours = total * args.seconds / asyncio.run(burst())
        batches = httpx.get(base + "/metrics").text

    med_ref, med_ours = statistics.median(lat_ref), statistics.median(lat_ours)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    cpu = cpu.split(":", 1)[-1].strip() or "unknown CPU"
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else ""
    mean_batch = _mean_batch(batches)
    print(f"machine: {cpu}, {torch.get_num_threads()} threads {gpu}")
    print(f"max |ours - transformers| on the pooled vector: {diff:.2e}")
    print(f"{args.preset} {args.seconds:g} s audio, {args.device}/{args.dtype}")
    print(f"latency  transformers {med_ref:.3f} s  ours (HTTP) {med_ours:.3f} s  "
          f"ratio {med_ours / med_ref:.2f}x (target <= 0.7x)")
    print(f"throughput ({args.clients} clients, {total} requests)  transformers sequential {thr_seq:.2f}, "
          f"{args.clients} threads {thr_ref:.2f} audio-s/s  ours {thr_ours:.2f} audio-s/s  ratio "
          f"{thr_ours / thr_seq:.2f}x / {thr_ours / thr_ref:.2f}x (target >= 2x); "
          f"mean batch (all requests) {mean_batch:.1f}")


def _mean_batch(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(metrics_text):
        if fam.name == "mhubert_batch_size":
            vals = {s.name: s.value for s in fam.samples}
            return vals["mhubert_batch_size_sum"] / max(1.0, vals["mhubert_batch_size_count"])
    return float("nan")


if __name__ == "__main__":
    main()
