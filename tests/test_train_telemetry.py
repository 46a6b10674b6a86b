"""Training telemetry: a running training process scraped with prometheus_client's parser, and the
TensorBoard scalars it wrote to S3 read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from test_train import SMALL
from test_train_corpus import make_toy_corpus

from mhubert import storage
from mhubert.train.callbacks import Callback
from mhubert.train.run import RunArgs, train
from mhubert.train.telemetry import PrometheusMetrics, TensorBoardScalars, telemetry_callbacks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Scraper(Callback):
    """GET /metrics of the running trainer after each log record (its own process, over HTTP)."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes: list[dict[str, float]] = []

    def on_log(self, trainer, record):
        with urllib.request.urlopen(self.url, timeout=10) as r:
            text = r.read().decode()
        samples = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                assert s.labels == {"rank": "0"}
                samples[s.name] = s.value
        self.scrapes.append(samples)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_metrics_scraped_twice_match_the_log_and_tensorboard_reads_back(tmp_path, s3_bucket):
    corpus = make_toy_corpus(str(tmp_path / "toy"), n=6)
    out = s3_bucket + "/tele"
    port = _free_port()
    scraper = _Scraper(port)
    assert [type(c) for c in telemetry_callbacks(metrics_port=port)] == [PrometheusMetrics,
                                                                         TensorBoardScalars]
    callbacks = [PrometheusMetrics(port, addr="127.0.0.1"), TensorBoardScalars(), scraper]
    res = train(RunArgs(corpus["manifest"], corpus["labels"], out, preset="tiny",
                        overrides=SMALL + ["train.max_update=4", "train.save_interval_updates=2"]),
                callbacks=callbacks)
    assert res["finished"]
    log = [json.loads(line) for line in storage.read_text(out + "/log.jsonl").splitlines()]
    assert [r["step"] for r in log] == [2, 4]

    first, second = scraper.scrapes
    assert first["mhubert_train_updates"] == 2 and second["mhubert_train_updates"] == 4
    for scrape, rec in zip(scraper.scrapes, log, strict=True):
        assert scrape["mhubert_train_loss"] == rec["loss"]
        assert scrape["mhubert_train_accuracy_masked"] == rec["acc_m"]
        assert scrape["mhubert_train_accuracy_unmasked"] == rec["acc_u"]
        assert scrape["mhubert_train_grad_norm"] == rec["gnorm"]
        assert scrape["mhubert_train_learning_rate"] > 0
        assert scrape["mhubert_train_step_seconds"] > 0
        assert scrape["mhubert_train_audio_seconds_per_second"] == rec["audio_s_per_s"]
        assert scrape["mhubert_train_device_memory_bytes"] == rec["mem_gb"] * 2**30
        assert scrape["mhubert_train_seconds_since_checkpoint"] >= 0
    # the server is gone with the run
    with pytest.raises(OSError):
        urllib.request.urlopen(scraper.url, timeout=2)

    # TensorBoard: the event files are on S3 next to the checkpoints; read them with its reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    local = tmp_path / "tb"
    local.mkdir()
    names = storage.listdir(out + "/tensorboard")
    assert names and all(n.startswith("events.out.tfevents.") for n in names)
    for n in names:
        (local / n).write_bytes(storage.read_bytes(f"{out}/tensorboard/{n}"))
    acc = EventAccumulator(str(local))
    acc.Reload()
    assert {"train/loss", "train/accuracy_masked", "train/learning_rate"} <= set(acc.Tags()["scalars"])
    got = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in got] == [2, 4]
    for (_, value), rec in zip(got, log, strict=True):
        assert value == pytest.approx(rec["loss"], rel=1e-6)      # stored as float32


def test_bad_metrics_ports_are_one_line_errors(tmp_path, monkeypatch, capsys):
    from mhubert.cli import main

    base = ["train", "run", "--preset", "tiny", "--manifest", str(tmp_path / "m.tsv"), "--labels",
            str(tmp_path / "l"), "--out", str(tmp_path / "o")]
    assert main(base + ["--metrics-port", "70000"]) == 2
    assert "--metrics-port must be in 0..65535" in capsys.readouterr().err
    monkeypatch.setenv("MHUBERT_METRICS_PORT", "ninety")
    assert main(base) == 2
    assert "MHUBERT_METRICS_PORT='ninety' is not a port number" in capsys.readouterr().err
