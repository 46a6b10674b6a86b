"""The trainer in one process: learning on a toy task, outputs, resume, schedule, errors."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_corpus import make_toy_corpus

from mhubert import storage
from mhubert.cli import main as cli_main
from mhubert.errors import BadInput
from mhubert.train import checkpoint as ckpt
from mhubert.train.config import split_overrides
from mhubert.train.schedule import linear_schedule, lr_factor
from mhubert.train.trainer import RunArgs, train

# a 2-layer tiny model on 1 s crops, 2 per batch, no decoding workers
SMALL = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
         "data.min_sample_size=16000", "data.num_workers=0", "train.log_interval=2"]


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


def test_overrides_route_to_sections():
    known = {"model": {"num_layers", "dropout"}, "data": {"max_tokens"}, "train": {"lr", "seed"}}
    out = split_overrides(["train.lr=1e-4", "max_tokens=9", "model.dropout=0"], known)
    assert out == {"model": ["dropout=0"], "data": ["max_tokens=9"], "train": ["lr=1e-4"]}
    for bad, msg in (["lrr=1"], "unknown"), (["optim.lr=1"], "section"), (["lr"], "key=value"):
        with pytest.raises(BadInput, match=msg):
            split_overrides(bad, known)


def test_loss_falls_and_the_run_publishes_its_outputs(corpus, tmp_path):
    out = str(tmp_path / "run")
    sets = SMALL + ["train.max_update=120", "train.warmup_updates=10", "train.lr=0.005",
                    "train.save_interval_updates=60", "train.log_interval=10"]
    res = train(RunArgs(corpus["manifest"], corpus["labels"], out, preset="tiny", overrides=sets))
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
    assert storage.listdir(f"{out}/checkpoints") == ["latest", "step-00000060.pt", "step-00000120.pt"]
    # the exported transformers directory holds the trained encoder
    from mhubert.model import load_hf

    state = ckpt.load(ckpt.latest_url(out))["model"]
    enc = load_hf(f"{out}/model").state_dict()
    for k, v in enc.items():
        torch.testing.assert_close(v, state["encoder." + k], rtol=0, atol=0)
    success = storage.read_json(f"{out}/_SUCCESS")
    assert success["step"] == 120 and success["num_classes"] == corpus["k"]
    # a finished run re-launched does nothing
    before = open(f"{out}/log.jsonl").read()
    again = train(RunArgs(corpus["manifest"], corpus["labels"], out, preset="tiny", overrides=sets))
    assert again["skipped"] and open(f"{out}/log.jsonl").read() == before


def _final_state(out: str) -> dict:
    return ckpt.load(ckpt.latest_url(out))


def test_n_plus_n_updates_with_a_restart_equal_2n(corpus, tmp_path, s3_bucket, monkeypatch):
    sets = SMALL + ["train.max_update=6", "train.warmup_updates=2", "train.save_interval_updates=100",
                    "model.dropout=0.1", "model.layerdrop=0.3", "model.dropout_input=0.1",
                    "model.attention_dropout=0.1"]
    whole = str(tmp_path / "whole")
    train(RunArgs(corpus["manifest"], corpus["labels"], whole, preset="tiny", overrides=sets))
    split = s3_bucket + "/split"          # the interrupted run checkpoints to S3
    half = train(RunArgs(corpus["manifest"], corpus["labels"], split, preset="tiny", overrides=sets),
                 stop_at=3)
    assert not half["finished"] and not storage.is_committed(split)
    assert ckpt.latest_url(split).endswith("step-00000003.pt")
    train(RunArgs(corpus["manifest"], corpus["labels"], split, preset="tiny", overrides=sets))
    a, b = _final_state(whole), _final_state(split)
    assert a["step"] == b["step"] == 6 and a["position"] == b["position"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=1e-9)
    # negative control: resuming without the saved RNG states (dropout, layerdrop, masking) diverges
    monkeypatch.setattr(ckpt, "set_rng_state", lambda state: None)
    third = str(tmp_path / "no-rng")
    train(RunArgs(corpus["manifest"], corpus["labels"], third, preset="tiny", overrides=sets), stop_at=3)
    train(RunArgs(corpus["manifest"], corpus["labels"], third, preset="tiny", overrides=sets))
    c = _final_state(third)
    assert max((a["model"][k] - c["model"][k]).abs().max().item() for k in a["model"]) > 1e-4


def test_a_failed_checkpoint_write_never_becomes_latest(storage_root, monkeypatch):
    ckpt.save(storage_root, 10, {"step": 10})
    real = storage.atomic_write

    def broken(url, data):
        if url.endswith(".pt"):
            raise OSError("disk full")
        real(url, data)

    monkeypatch.setattr(storage, "atomic_write", broken)
    with pytest.raises(OSError):
        ckpt.save(storage_root, 20, {"step": 20})
    monkeypatch.setattr(storage, "atomic_write", real)
    assert ckpt.load(ckpt.latest_url(storage_root))["step"] == 10
    assert not any(n.startswith("step-00000020") for n in storage.listdir(storage_root + "/checkpoints"))


def test_cli_errors_are_one_line(corpus, tmp_path, capsys):
    rc = cli_main(["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
                   "--labels", str(tmp_path / "nolabels"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "_SUCCESS" in err and "Traceback" not in err
    rc = cli_main(["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
                   "--labels", corpus["labels"], "--out", str(tmp_path / "o"), "--set", "train.lrr=1"])
    assert rc == 2 and "lrr" in capsys.readouterr().err


def test_cli_run_in_pad_mode_with_accumulation(corpus, tmp_path, capsys):
    out = str(tmp_path / "pad")
    args = ["train", "run", "--preset", "tiny", "--manifest", corpus["manifest"],
            "--labels", corpus["labels"], "--out", out]
    for s in SMALL + ["data.batching=pad", "train.update_freq=2", "train.max_update=2"]:
        args += ["--set", s]
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    state = ckpt.load(ckpt.latest_url(out))
    # 2 updates x 2 accumulated batches: the position moved 4 batches (or into the next epoch)
    assert state["position"] != [1, 0] and state["config"]["train"]["update_freq"] == 2
    assert storage.is_committed(out)


def test_init_from_loads_the_encoder_and_refuses_a_mismatch(tmp_path):
    from mhubert.model import HubertConfig, HubertPretrainModel, save_hf
    from mhubert.train.trainer import _init_encoder

    cfg = HubertConfig.preset("tiny", ["num_layers=2"])
    torch.manual_seed(1)
    src = HubertPretrainModel(cfg, 8)
    save_hf(src.encoder, str(tmp_path / "hf"))
    torch.manual_seed(2)
    dst = HubertPretrainModel(cfg, 8)
    _init_encoder(dst, str(tmp_path / "hf"))
    for k, v in src.encoder.state_dict().items():
        torch.testing.assert_close(dst.encoder.state_dict()[k], v, rtol=0, atol=0)
    wider = HubertPretrainModel(HubertConfig.preset("tiny", ["num_layers=2", "ffn_dim=96"]), 8)
    with pytest.raises(BadInput, match="init-from"):
        _init_encoder(wider, str(tmp_path / "hf"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_run_with_bf16_autocast_and_fused_adamw(corpus, tmp_path):
    out = str(tmp_path / "gpu")
    res = train(RunArgs(corpus["manifest"], corpus["labels"], out, preset="tiny",
                        overrides=SMALL + ["train.max_update=4", "train.bf16=true"]))
    assert res["finished"]
    rec = json.loads(open(f"{out}/log.jsonl").read().splitlines()[-1])
    assert rec["mem_gb"] > 0 and rec["loss"] == rec["loss"]   # finite, measured on the device
