"""Micro-batching: a request's result does not depend on its batch; batches close on their limits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from helpers.api_assets import make_assets, tone, wav_bytes

from api.batching import MicroBatcher, NotReady, QueueFull
from api.service import Job, ModelService
from api.settings import Settings


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    assets = make_assets(str(tmp_path_factory.mktemp("batch_assets")))
    svc = ModelService(Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"]))
    svc.load()
    return svc


def _wavs() -> list[torch.Tensor]:
    from mhubert.audio import normalize

    return [normalize(torch.from_numpy(tone(s, freq=f, seed=i)))
            for i, (s, f) in enumerate([(0.7, 200.0), (1.6, 330.0), (0.031, 440.0), (1.1, 550.0)])]


def test_alone_vs_batched_within_1e4(service):
    wavs = _wavs()
    layers = tuple(range(5))
    b = service.bundle
    frames = [service.run_batch([Job(b, w, "embed", layers, pool=False)])[0] for w in wavs]
    pooled = [service.run_batch([Job(b, w, "embed", layers, pool=True)])[0] for w in wavs]
    lid = [service.run_batch([Job(b, w, "lid")])[0] for w in wavs]
    jobs = [Job(b, w, "embed", layers, pool=False) for w in wavs] \
        + [Job(b, w, "embed", layers, pool=True) for w in wavs] + [Job(b, w, "lid") for w in wavs]
    together = service.run_batch(jobs)
    n = len(wavs)
    for i in range(n):
        t = service.bundle.model.num_frames(wavs[i].numel())
        assert together[i].shape == frames[i].shape == (5, t, 64)
        torch.testing.assert_close(together[i], frames[i], atol=1e-4, rtol=0)
        torch.testing.assert_close(together[n + i], pooled[i], atol=1e-4, rtol=0)
        torch.testing.assert_close(together[2 * n + i], lid[i], atol=1e-4, rtol=0)
        # mean pooling covers exactly the valid frames
        torch.testing.assert_close(pooled[i], frames[i].mean(dim=1), atol=1e-5, rtol=0)


def test_batcher_groups_and_respects_limits():
    seen: list[list[int]] = []

    def runner(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [x * 10 for x in items]

    async def main() -> list[int]:
        b = MicroBatcher(runner, max_batch_size=3, max_wait_ms=100.0, max_batch_samples=100, max_queue=50)
        b.start()
        # costs: padded batch cost = size x longest; 30+30+30 fits, 60 would make 4x60 > 100
        tasks = [asyncio.create_task(b.submit(x, c)) for x, c in
                 [(1, 30), (2, 30), (3, 30), (4, 60), (5, 10), (6, 100)]]
        out = await asyncio.gather(*tasks)
        await b.stop()
        return out

    assert asyncio.run(main()) == [10, 20, 30, 40, 50, 60]
    # all six were queued before the worker ran: [1,2,3] is full; 4+5 would pad to 2 x 60 > 100;
    # 5+6 to 2 x 100 > 100
    assert seen == [[1, 2, 3], [4], [5], [6]]


def test_batcher_queue_full_and_errors():
    def failing(items: list[int]) -> list[int]:
        raise RuntimeError("boom")

    async def main() -> None:
        b = MicroBatcher(failing, max_batch_size=2, max_wait_ms=1000.0, max_queue=2)
        b.start()
        t1 = asyncio.create_task(b.submit(1, 1))
        t2 = asyncio.create_task(b.submit(2, 1))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit(3, 1)
        for t in (t1, t2):
            with pytest.raises(RuntimeError, match="boom"):
                await t
        await b.stop()

    asyncio.run(main())


def test_concurrent_requests_batched_through_app(service):
    """Concurrent HTTP requests end up in shared batches and get their own results."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings = Settings(model_uri=service.settings.model_uri, max_batch_size=4, max_wait_ms=200.0,
                        eager_load=True)
    app = create_app(settings, service)
    audios = [wav_bytes(tone(s, freq=f, seed=i)) for i, (s, f) in enumerate([(0.5, 200.0), (0.9, 300.0),
                                                                            (1.3, 400.0), (0.6, 500.0)])]
    with TestClient(app) as c:
        alone = [c.post("/v1/embeddings", content=a).json()["embeddings"] for a in audios]

        async def burst():
            import httpx

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
                rs = await asyncio.gather(*[ac.post("/v1/embeddings", content=a) for a in audios])
            return [r.json()["embeddings"] for r in rs]

        together = c.portal.call(burst)
        text = c.get("/metrics").text
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    from prometheus_client.parser import text_string_to_metric_families

    hist = {s.labels.get("le"): s.value for f in text_string_to_metric_families(text)
            if f.name == "mhubert_batch_size" for s in f.samples if s.name.endswith("_bucket")}
    assert hist["1.0"] < hist["+Inf"], "no request shared a batch"


@pytest.mark.parametrize("layers", [(0,), (2,), (3, 1)])
def test_lower_layers_stop_early_but_match_the_full_forward(service, layers):
    wavs = _wavs()
    got = service.run_batch([Job(service.bundle, w, "embed", layers, pool=False) for w in wavs])
    model = service.bundle.model
    with torch.no_grad():
        for w, g in zip(wavs, got, strict=True):
            full = model.hidden_states(w[None])
            torch.testing.assert_close(g, torch.stack([full[k][0] for k in layers]), atol=1e-4, rtol=0)


def test_full_queue_answers_429_with_retry_after(service):
    """One request blocks the model, one waits (max_queue=1): the third gets 429 at once."""
    import threading

    import httpx
    from fastapi.testclient import TestClient

    from api.app import create_app

    release, entered = threading.Event(), threading.Event()
    settings = Settings(model_uri=service.settings.model_uri, max_batch_size=1, max_queue=1, eager_load=True)
    blocked = ModelService(settings)
    blocked.attach(service.bundle)
    real = blocked.batcher.runner

    def blocking(jobs):
        entered.set()
        assert release.wait(60), "never released"
        return real(jobs)

    blocked.batcher.runner = blocking
    app = create_app(settings, blocked)
    body = wav_bytes(tone(0.3))

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as ac:
            tasks = [asyncio.create_task(ac.post("/v1/embeddings", content=body))]
            assert await asyncio.to_thread(entered.wait, 60)  # the first request holds the model
            tasks += [asyncio.create_task(ac.post("/v1/embeddings", content=body)) for _ in range(2)]
            # one of the two waits in the queue (max_queue=1), the other is turned away
            done, _ = await asyncio.wait(tasks[1:], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            release.set()
            first = done.pop().result()
            return first, await asyncio.gather(*tasks)

    with TestClient(app) as c:
        first, all_ = c.portal.call(scenario)
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
    assert first.json()["error"]["code"] == "overloaded"
    assert sorted(r.status_code for r in all_) == [200, 200, 429]


def test_batcher_stops_and_starts_again():
    async def main() -> list:
        b = MicroBatcher(lambda items: [x + 1 for x in items], max_batch_size=2, max_wait_ms=1.0)
        b.start()
        first = await b.submit(1, 1)
        await b.stop()
        with pytest.raises(NotReady):
            await b.submit(2, 1)
        b.start()
        second = await b.submit(2, 1)
        await b.stop()
        return [first, second]

    assert asyncio.run(main()) == [2, 3]


def test_app_lifespan_stops_and_restarts_the_batcher(service):
    """Two lifespans of one app (stop, start, serve): the second serves like the first."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(service.settings, service)
    body = wav_bytes(tone(0.4))
    results = []
    for _ in range(2):
        with TestClient(app) as c:
            r = c.post("/v1/embeddings", content=body)
            assert r.status_code == 200, r.text
            results.append(r.json()["embeddings"])
        assert not service.batcher.running
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_a_job_runs_on_the_bundle_it_was_given(service):
    """The batch groups jobs by their bundle snapshot: a job queued before a swap runs on the old one."""
    from mhubert.model import hubert_tiny

    torch.manual_seed(7)
    other = service.make_bundle(hubert_tiny())
    w = _wavs()[0]
    old, new = service.bundle, other
    got = service.run_batch([Job(old, w, "embed", (4,)), Job(new, w, "embed", (4,)),
                             Job(old, w, "embed", (4,))])
    with torch.no_grad():
        ref_old = old.model.hidden_states(w[None])[4][0].mean(0)
        ref_new = new.model.hidden_states(w[None])[4][0].mean(0)
    torch.testing.assert_close(got[0][0], ref_old, atol=1e-4, rtol=0)
    torch.testing.assert_close(got[2][0], ref_old, atol=1e-4, rtol=0)
    torch.testing.assert_close(got[1][0], ref_new, atol=1e-4, rtol=0)
    assert (got[0] - got[1]).abs().max() > 1e-2
