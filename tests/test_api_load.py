"""A short load test against a real uvicorn on 127.0.0.1: 16 concurrent clients, 160 requests, no
errors, bounded memory growth."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from helpers.api_assets import make_assets, tone, wav_bytes

from api.app import create_app
from api.background import serve_in_thread
from api.settings import Settings

CLIENTS, PER_CLIENT = 16, 10


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assets = make_assets(str(tmp_path_factory.mktemp("load_assets")))
    settings = Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], eager_load=True, max_batch_size=8,
                        max_wait_ms=5.0, max_queue=256)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_concurrent_clients_no_errors_bounded_memory(server):
    bodies = [wav_bytes(tone(0.3 + 0.05 * (i % 5), freq=150.0 + 40 * i, seed=i)) for i in range(CLIENTS)]

    async def client(i: int, ac: httpx.AsyncClient, n: int) -> list[int]:
        codes = []
        for j in range(n):
            route = "/v1/lid" if (i + j) % 4 == 0 else "/v1/embeddings"
            r = await ac.post(route, content=bodies[i], headers={"content-type": "audio/wav"})
            codes.append(r.status_code)
            if r.status_code == 200 and route == "/v1/embeddings":
                assert np.isfinite(r.json()["embeddings"]).all()
        return codes

    async def run(n: int) -> list[int]:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as ac:
            per = await asyncio.gather(*[client(i, ac, n) for i in range(CLIENTS)])
        return [c for codes in per for c in codes]

    assert set(asyncio.run(run(1))) == {200}  # warm-up: allocator pools, first batches
    before = _rss_mb()
    codes = asyncio.run(run(PER_CLIENT))
    growth = _rss_mb() - before
    assert len(codes) == CLIENTS * PER_CLIENT and set(codes) == {200}, sorted(set(codes))
    assert growth < 150, f"RSS grew by {growth:.0f} MB over {len(codes)} requests"
    metrics = httpx.get(server + "/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(metrics)}
    batches = {s.labels["le"]: s.value for s in fams["mhubert_batch_size"].samples
               if s.name.endswith("_bucket")}
    assert batches["1.0"] < batches["+Inf"], "16 concurrent clients never shared a batch"
