"""The trainer in one process: learning on a toy task, outputs, resume, schedule, errors, reuse."""

from __future__ import annotations

import json
import logging
import os
import signal

import pytest
import torch
from test_train_corpus import make_toy_corpus

from mhubert import storage
from mhubert.artifacts import StaleArtifact, TrainRun
from mhubert.cli import main as cli_main
from mhubert.errors import BadInput
from mhubert.train import checkpoint as ckpt
from mhubert.train.callbacks import Callback
from mhubert.train.config import Recipe, TrainConfig
from mhubert.train.run import RunArgs, train
from mhubert.train.schedule import linear_schedule, lr_factor

# a 2-layer tiny model on 1 s crops, 2 per batch, no decoding workers
SMALL = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
         "data.min_sample_size=16000", "data.num_workers=0", "train.log_interval=2"]
# 6 updates with every source of randomness on (dropout, layerdrop, masking)
RANDOM6 = SMALL + ["train.max_update=6", "train.warmup_updates=2", "train.save_interval_updates=100",
                   "model.dropout=0.1", "model.layerdrop=0.3", "model.dropout_input=0.1",
                   "model.attention_dropout=0.1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores, 2 threads per process oversubscribe (~8x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy")), n=12)


def _args(corpus, out, sets, **kw) -> RunArgs:
    return RunArgs(corpus["manifest"], corpus["labels"], out, preset="tiny", overrides=sets, **kw)


@pytest.fixture(scope="module")
def whole(corpus, tmp_path_factory):
    """An uninterrupted RANDOM6 run: what every interrupted run must end equal to."""
    out = str(tmp_path_factory.mktemp("whole") / "run")
    train(_args(corpus, out, RANDOM6))
    return ckpt.load(ckpt.latest_url(out))


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] == 6 and a["position"] == b["position"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=1e-9)


def _fairseq_polynomial_lr(num_updates: int, peak: float, warmup: int, total: int) -> float:
    """fairseq PolynomialDecayLRSchedule (power 1, end 0): the lr used after ``num_updates``."""
    if num_updates == 0:
        return peak / warmup                      # __init__ sets warmup_factor = 1 / warmup
    if warmup > 0 and num_updates <= warmup:
        return peak * num_updates / warmup
    if num_updates >= total:
        return 0.0
    return peak * (1 - (num_updates - warmup) / (total - warmup))


def test_schedule_matches_fairseq_polynomial_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-4)
    sched = linear_schedule(opt, warmup_updates=32, max_update=200)
    for step in range(205):
        assert opt.param_groups[0]["lr"] == pytest.approx(_fairseq_polynomial_lr(step, 5e-4, 32, 200))
        opt.step()
        sched.step()
    assert lr_factor(32, 32, 200) == 1.0


def test_recipe_is_typed_and_validated():
    r = Recipe.load("tiny", ["train.lr=0.0001", "max_tokens=9", "model.dropout=0"])
    assert (r.train.lr, r.data.max_tokens, r.model.dropout) == (0.0001, 9, 0.0)
    assert isinstance(r.train, TrainConfig) and r.to_dict()["train"]["betas"] == [0.9, 0.98]
    # cadence and decoding workers do not change the weights, so not the fingerprint
    assert "log_interval" not in r.settings()["train"] and "num_workers" not in r.settings()["data"]
    for bad, msg in (["lrr=1"], "lrr"), (["optim.lr=1"], "section"), (["train.max_update=0"],
                                                                        "max_update must be >= 1"):
        with pytest.raises(BadInput, match=msg):
            Recipe.load("tiny", bad)
    with pytest.raises(BadInput, match="betas"):
        TrainConfig(betas=(0.9, 1.5))


def test_loss_falls_and_the_run_publishes_its_outputs(corpus, tmp_path):
    out = str(tmp_path / "run")
    sets = SMALL + ["train.max_update=120", "train.warmup_updates=10", "train.lr=0.005",
                    "train.save_interval_updates=60", "train.log_interval=10"]
    res = train(_args(corpus, out, sets))
    assert res["finished"] and res["step"] == 120
    recs = [json.loads(line) for line in open(f"{out}/log.jsonl")]
    assert [r["step"] for r in recs] == list(range(10, 121, 10))
    assert {"loss", "acc_m", "acc_u", "lr", "gnorm", "audio_s_per_s", "mem_gb"} <= set(recs[0])
    # 8 balanced classes: chance is 1/8 = 0.125 and CE ln(8) = 2.08 (plus the feature penalty)
    assert recs[0]["acc_m"] < 0.2
    assert (recs[-1]["acc_m"] + recs[-2]["acc_m"]) / 2 > 0.3
    assert recs[-1]["loss"] < recs[0]["loss"] - 0.5
    assert recs[-1]["lr"] == 0.0
    assert open(f"{out}/loss.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert ckpt.latest_url(out).endswith("step-00000120.pt")
    assert [n for n in storage.listdir(f"{out}/checkpoints") if n.endswith(".pt")] == [
        "step-00000060.pt", "step-00000120.pt"]
    # the exported transformers directory holds the trained encoder
    from mhubert.model import load_hf

    state = ckpt.load(ckpt.latest_url(out))["model"]
    enc = load_hf(f"{out}/model").state_dict()
    for k, v in enc.items():
        torch.testing.assert_close(v, state["encoder." + k], rtol=0, atol=0)
    run = TrainRun(out)
    run.verify()                                       # every file of the marker checks out
    assert run.info["step"] == 120 and run.info["num_classes"] == corpus["k"]
    assert set(run.marker().inputs) == {"labels", "manifest", "init_model"}
    # a finished run re-launched with the same settings does nothing
    before = open(f"{out}/log.jsonl").read()
    again = train(_args(corpus, out, sets))
    assert again["skipped"] and open(f"{out}/log.jsonl").read() == before
    # ... and so does one that only logs differently (not part of the fingerprint)
    assert train(_args(corpus, out, sets + ["train.log_interval=5"]))["skipped"]


def test_n_plus_n_updates_with_a_restart_equal_2n(corpus, tmp_path, s3_bucket, monkeypatch, whole):
    split = s3_bucket + "/split"          # the interrupted run checkpoints to S3
    half = train(_args(corpus, split, RANDOM6), stop_at=3)
    assert not half["finished"] and not TrainRun(split).is_committed()
    assert ckpt.latest_url(split).endswith("step-00000003.pt")
    # its checkpoints were made with these settings: other ones stop before any work
    with pytest.raises(StaleArtifact, match=r"train\.lr.*--resume.*--force"):
        train(_args(corpus, split, RANDOM6 + ["train.lr=0.01"]))
    train(_args(corpus, split, RANDOM6))
    _assert_same_run(whole, ckpt.load(ckpt.latest_url(split)))
    # negative control: resuming without the saved RNG states (dropout, layerdrop, masking) diverges
    monkeypatch.setattr(ckpt, "set_rng_state", lambda state: None)
    third = str(tmp_path / "no-rng")
    train(_args(corpus, third, RANDOM6), stop_at=3)
    train(_args(corpus, third, RANDOM6))
    c = ckpt.load(ckpt.latest_url(third))
    assert max((whole["model"][k] - c["model"][k]).abs().max().item() for k in whole["model"]) > 1e-4


class _SigtermAt(Callback):
    """SIGTERM to this very process after update ``at`` (what Kubernetes sends on preemption)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer, stats):
        if trainer.num_updates == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


class _LatestAlwaysVerifies(Callback):
    """After every update: ``latest`` names a checkpoint whose bytes match its record."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, trainer, stats):
        rec = trainer.store.latest_record()
        if rec:
            trainer.store.read_verified(rec["name"], rec)
            self.seen.append(rec["step"])


def test_sigterm_stops_with_one_checkpoint_and_the_resume_equals_the_whole_run(
        corpus, tmp_path, whole, caplog):
    out = str(tmp_path / "term")
    res = train(_args(corpus, out, RANDOM6), callbacks=[_SigtermAt(4)])
    assert res["preempted"] and not res["finished"] and res["step"] == 4
    assert [n for n in storage.listdir(f"{out}/checkpoints") if n.endswith(".pt")] == [
        "step-00000004.pt"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL     # the handler is removed again
    assert "stop requested (SIGTERM)" in caplog.text
    train(_args(corpus, out, RANDOM6))
    _assert_same_run(whole, ckpt.load(ckpt.latest_url(out)))


def test_failed_checkpoint_writes_are_retried_while_training_goes_on(corpus, tmp_path, monkeypatch,
                                                                     caplog):
    out = str(tmp_path / "flaky")
    caplog.set_level(logging.INFO)
    real, failures = storage.atomic_write, []

    def flaky(url, data):
        # the first write of step 2's checkpoint and the first of step 4's fail
        name = url.rsplit("/", 1)[-1]
        if name in ("step-00000002.pt", "step-00000004.pt") and name not in failures:
            failures.append(name)
            raise OSError("503 SlowDown")
        real(url, data)

    monkeypatch.setattr(storage, "atomic_write", flaky)
    watch = _LatestAlwaysVerifies()
    res = train(_args(corpus, out, SMALL + ["train.max_update=6", "train.save_interval_updates=2"]),
                callbacks=[watch])
    assert res["finished"] and len(failures) == 2
    assert "writing checkpoint 2 failed (attempt 1)" in caplog.text
    assert "checkpoint 2 written after 1 failed attempt(s)" in caplog.text
    # latest never named a missing or partial checkpoint, and moved only forward
    assert watch.seen == sorted(watch.seen) and watch.seen[-1] == 6 and 2 in watch.seen
    assert [n for n in storage.listdir(f"{out}/checkpoints") if n.endswith(".pt")] == [
        "step-00000002.pt", "step-00000004.pt", "step-00000006.pt"]
    assert TrainRun(out).is_committed()


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(corpus, tmp_path, whole, caplog):
    out = str(tmp_path / "corrupt")
    sets = RANDOM6 + ["train.save_interval_updates=2"]
    train(_args(corpus, out, sets), stop_at=4)
    path = f"{out}/checkpoints/step-00000004.pt"
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0x01                              # one flipped bit, same size
    open(path, "wb").write(bytes(raw))
    train(_args(corpus, out, sets))
    assert "step-00000004.pt cannot be used" in caplog.text and "sha256" in caplog.text
    assert "resuming from the older checkpoint step-00000002.pt" in caplog.text
    _assert_same_run(whole, ckpt.load(ckpt.latest_url(out)))


def test_checkpoint_store_detects_truncation_and_never_points_at_a_failed_write(storage_root,
                                                                                monkeypatch):
    store = ckpt.CheckpointStore(storage_root)
    for step in (10, 20):
        store.save(step, {"step": step, "w": torch.arange(1000)})
    real = storage.atomic_write

    def broken(url, data):
        if url.endswith(".pt"):
            raise OSError("disk full")
        real(url, data)

    monkeypatch.setattr(storage, "atomic_write", broken)
    with pytest.raises(OSError):
        store.save(30, {"step": 30})
    monkeypatch.setattr(storage, "atomic_write", real)
    assert store.latest_record()["step"] == 20
    assert not any(n.startswith("step-00000030") for n in storage.listdir(store.url))
    # a truncated newest checkpoint: the previous one is used
    name = store.path("step-00000020.pt")
    storage.atomic_write(name, storage.read_bytes(name)[:-100])
    url, state = store.load_latest()
    assert url.endswith("step-00000010.pt") and state["step"] == 10
    with pytest.raises(BadInput, match="bytes, its record says"):
        ckpt.load(name)


def test_cli_errors_are_one_line(corpus, tmp_path, capsys):
    rc = cli_main(["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
                   "--labels", str(tmp_path / "nolabels"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no committed labels" in err and "Traceback" not in err
    rc = cli_main(["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
                   "--labels", corpus["labels"], "--out", str(tmp_path / "o"), "--set", "train.lrr=1"])
    assert rc == 2 and "lrr" in capsys.readouterr().err
    rc = cli_main(["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
                   "--labels", corpus["labels"], "--out", str(tmp_path / "o"),
                   "--callback", "nowhere:Nothing"])
    assert rc == 2 and "callback 'nowhere:Nothing' cannot be loaded" in capsys.readouterr().err


def test_cli_run_in_pad_mode_with_accumulation_then_stop_resume_force(corpus, tmp_path, capsys):
    out = str(tmp_path / "pad")
    args = ["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
            "--labels", corpus["labels"], "--out", out, "--no-tensorboard"]
    for s in SMALL + ["data.batching=pad", "train.update_freq=2", "train.max_update=2"]:
        args += ["--set", s]
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    state = ckpt.load(ckpt.latest_url(out))
    # 2 updates x 2 accumulated batches: the position moved 4 batches (or into the next epoch)
    assert state["position"] != [1, 0] and state["config"]["train"]["update_freq"] == 2
    first = TrainRun(out).fingerprint
    assert first
    # other settings on a finished run: stop, naming the setting and the two ways on
    assert cli_main(args + ["--set", "train.lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert "recipe.train.lr: 0.005 -> 0.001" in err and "--resume" in err and "--force" in err
    # --resume continues the finished run's checkpoints with the new settings (2 more updates)
    assert cli_main(args + ["--set", "train.max_update=4", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 4
    assert TrainRun(out).fingerprint not in (None, first)
    # --force starts again from update 0
    assert cli_main(args + ["--force"]) == 0
    assert TrainRun(out).fingerprint == first
    assert [n for n in storage.listdir(f"{out}/checkpoints") if n.endswith(".pt")] == [
        "step-00000002.pt"]


def test_init_from_loads_the_encoder_and_refuses_a_mismatch(corpus, tmp_path):
    from mhubert.artifacts import Labels, Manifest
    from mhubert.data.dataset import LabeledAudio
    from mhubert.model import HubertConfig, HubertPretrainModel, save_hf
    from mhubert.train.dist import Dist
    from mhubert.train.trainer import Trainer

    cfg = HubertConfig.preset("tiny", ["num_layers=2"])
    torch.manual_seed(1)
    src = HubertPretrainModel(cfg, 8)
    save_hf(src.encoder, str(tmp_path / "hf"))

    def trainer(sets):
        recipe = Recipe.load("tiny", sets)
        data = LabeledAudio(Manifest.read(corpus["manifest"]), Labels(corpus["labels"]), recipe.data)
        return Trainer(recipe, data, 8, Dist(), TrainRun(str(tmp_path / "r")))

    dst = trainer(["model.num_layers=2"])
    dst.init_encoder(str(tmp_path / "hf"))
    for k, v in src.encoder.state_dict().items():
        torch.testing.assert_close(dst.model.encoder.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(BadInput, match="init-from"):
        trainer(["model.num_layers=2", "model.ffn_dim=96"]).init_encoder(str(tmp_path / "hf"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_run_with_bf16_autocast_and_fused_adamw(corpus, tmp_path):
    out = str(tmp_path / "gpu")
    res = train(_args(corpus, out, SMALL + ["train.max_update=4", "train.bf16=true"]))
    assert res["finished"]
    rec = json.loads(open(f"{out}/log.jsonl").read().splitlines()[-1])
    assert rec["mem_gb"] > 0 and rec["loss"] == rec["loss"]   # finite, measured on the device


def test_a_checkpoint_write_that_never_succeeds_fails_past_its_budget_naming_the_url(tmp_path):
    from mhubert.train.saver import RetryingWriter

    class Down(ckpt.CheckpointStore):
        def write(self, step, data, meta=None):
            raise OSError("connection refused")

    now = [0.0]
    writer = RetryingWriter(Down(str(tmp_path / "run")), clock=lambda: now[0],
                            sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not writer.submit(5, b"x") and writer.pending is not None
    assert not writer.tick(5) and not writer.tick(6)          # retried at 6 (after 1 update)
    assert writer.failures == 2 and writer.retry_at == 6 + 4
    with pytest.raises(BadInput, match=r"could not write checkpoint 5 to .*run/checkpoints within 20 s"):
        writer.drain(20.0)
    assert now[0] <= 20.0                                     # the budget bounded the waiting
