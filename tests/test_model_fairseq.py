"""``mhubert model export --format fairseq``: the layout of mHuBERT-147's released ``.pt``, pinned by
torchaudio's own fairseq key conversion into torchaudio's HuBERT (strict load, same outputs), and
read back directly by ``load_model`` / ``--init-from``."""

from __future__ import annotations

import argparse

import pytest
import torch
from helpers.fairseq_ref import torchaudio_model
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

from mhubert.errors import BadInput
from mhubert.model import HubertConfig, HubertPretrainModel, load_fairseq, load_model
from mhubert.model.cli import register
from mhubert.train.checkpoint import CheckpointStore

K = 9


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A pretraining model with non-trivial weights, stored as a training run's latest checkpoint."""
    torch.manual_seed(11)
    cfg = HubertConfig.preset("tiny", ["num_layers=2"])
    model = HubertPretrainModel(cfg, K).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    run = str(tmp_path_factory.mktemp("run") / "train")
    CheckpointStore(run).save(7, {"step": 7, "model": model.state_dict(), "num_classes": K,
                                  "model_config": cfg.to_dict(), "label_rate": 100})
    return model, run


def test_fairseq_export_loads_strictly_into_torchaudio_with_the_same_outputs(trained, tmp_path):
    model, run = trained
    out = str(tmp_path / "checkpoint_mhubert.pt")
    assert run_cli("model", "export", "--format", "fairseq", "--checkpoint", run, "--out", out) == 0
    ckpt = torch.load(out, map_location="cpu", weights_only=True)   # plain dicts and tensors only
    # the released checkpoint's layout
    assert {"args", "cfg", "model", "optimizer_history", "extra_state"} <= set(ckpt)
    cfg = ckpt["cfg"]
    assert cfg["model"]["_name"] == "hubert" and cfg["task"]["_name"] == "hubert_pretraining"
    assert cfg["task"]["label_rate"] == 100 and cfg["task"]["sample_rate"] == 16000
    assert ckpt["optimizer_history"][-1]["num_updates"] == 7
    sd = ckpt["model"]
    assert sd["label_embs_concat"].shape == (K + 4, model.cfg.final_dim)   # fairseq's Dictionary
    torch.testing.assert_close(sd["label_embs_concat"][4:], model.label_embs.detach(), rtol=0, atol=0)
    torch.testing.assert_close(sd["final_proj.weight"], model.final_proj.weight.detach(), rtol=0, atol=0)
    assert "encoder.pos_conv.0.weight_g" in sd and "post_extract_proj.weight" in sd

    converted = _convert_state_dict(sd)
    assert converted.pop("label_embs_concat").shape[0] == K + 4
    ta = torchaudio_model(cfg["model"]).eval()
    ta.load_state_dict(converted, strict=True)
    wav = torch.randn(2, 12_000)
    with torch.no_grad():
        theirs, _ = ta.extract_features(wav)
        ours = model.encoder.hidden_states(wav)[1:]
    assert len(theirs) == len(ours) == model.cfg.num_layers
    for t, o in zip(theirs, ours, strict=True):
        torch.testing.assert_close(t, o, atol=1e-5, rtol=0)


def test_a_fairseq_pt_is_read_directly_and_round_trips(trained, tmp_path):
    model, run = trained
    out = str(tmp_path / "fs.pt")
    assert run_cli("model", "export", "--format", "fairseq", "--checkpoint", run, "--out", out,
                   "--label-rate", "50") == 0
    back = load_fairseq(out)
    assert back.num_classes == K and back.cfg == model.cfg
    for k, v in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, rtol=0, atol=0)
    enc = load_model(out)                         # what serving and --init-from use
    wav = torch.randn(1, 8_000)
    with torch.no_grad():
        torch.testing.assert_close(enc(wav), model.encoder(wav), rtol=0, atol=0)
    # and back to a transformers directory from the fairseq file
    assert run_cli("model", "export", "--checkpoint", out, "--out", str(tmp_path / "hf")) == 0
    with torch.no_grad():
        torch.testing.assert_close(load_model(str(tmp_path / "hf"))(wav), model.encoder(wav),
                                   rtol=0, atol=0)
    # which has no prediction head to export to fairseq: said so
    with pytest.raises(BadInput, match="transformers directory: it holds the encoder only"):
        run_cli("model", "export", "--format", "fairseq", "--checkpoint", str(tmp_path / "hf"),
                "--out", str(tmp_path / "x.pt"))


def test_a_changed_byte_in_an_exported_model_is_named(trained, tmp_path):
    from mhubert.artifacts import CorruptArtifact
    from mhubert.model import save_hf

    model, _ = trained
    out = tmp_path / "hf"
    save_hf(model, str(out))
    raw = bytearray((out / "model.safetensors").read_bytes())
    raw[-10] ^= 0x01
    (out / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifact, match=r"model\.safetensors does not match the sha256"):
        load_model(str(out))
