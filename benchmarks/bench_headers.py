"""Header reads over S3 with 20 ms added per request: ``mhubert.corpus.headers.read_headers``
(concurrent, one ranged GET per file mostly) against a sequential ``soundfile.info`` loop over s3fs
file objects, on the tests' moto server behind the tests' latency proxy (127.0.0.1 only).

    python benchmarks/bench_headers.py --objects 2000 --latency-ms 20 --workers 32

Target: ≥ 5x. The objects are 2-4 s clips, half WAV and half MP3 (Common Voice's format).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clip(i: int) -> tuple[str, bytes]:
    rng = np.random.default_rng(i)
    x = (0.1 * rng.standard_normal(int(16000 * (2 + 2 * rng.random())))).astype(np.float32)
    buf = io.BytesIO()
    if i % 2:
        sf.write(buf, x, 16000, format="MP3", subtype="MPEG_LAYER_III")
        return f"clips/{i:06d}.mp3", buf.getvalue()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return f"clips/{i:06d}.wav", buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()

    import logging

    import s3fs
    from helpers.s3proxy import S3Proxy
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_port())
    server.start()
    moto = f"http://127.0.0.1:{server._port}"
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=moto)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto})
    fs.mkdir("bench")
    fs.pipe({f"bench/{k}": v for k, v in map(_clip, range(args.objects))})
    urls = [f"s3://bench/{k}" for k, _ in map(_clip, range(args.objects))]

    from mhubert.corpus.headers import read_headers, sequential_info

    with S3Proxy(moto, latency_s=args.latency_ms / 1000) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
        s3fs.S3FileSystem.clear_instance_cache()
        t = time.perf_counter()
        seq = sequential_info(urls)
        t_seq = time.perf_counter() - t
        req_seq = proxy.forwarded
        s3fs.S3FileSystem.clear_instance_cache()
        t = time.perf_counter()
        n, why = read_headers(urls, workers=args.workers)
        t_conc = time.perf_counter() - t
        req_conc = proxy.forwarded - req_seq
    server.stop()
    assert not why, why
    assert np.array_equal(n, np.asarray(seq)), "concurrent and sequential lengths differ"
    print(json.dumps({"objects": args.objects, "latency_ms": args.latency_ms, "workers": args.workers,
                      "sequential_s": round(t_seq, 2), "concurrent_s": round(t_conc, 2),
                      "speedup": round(t_seq / t_conc, 1), "requests_sequential": req_seq,
                      "requests_concurrent": req_conc,
                      "files_per_s": round(args.objects / t_conc, 1)}))


if __name__ == "__main__":
    main()
