"""Checkpoint conversion: fairseq import, trainer checkpoints, transformers export, CLI."""

from __future__ import annotations

import argparse
import io
import sys
import types

import pytest
import torch
import transformers

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.model import HubertConfig, HubertPretrainModel, load_fairseq, load_model
from mhubert.model.cli import register
from mhubert.model.convert import save_checkpoint_model

K = 7

# transformers name -> fairseq name, from transformers' own fairseq converters
# (convert_hubert_original_pytorch_checkpoint_to_pytorch.py MAPPING + load_conv_layer).
HF_TO_FAIRSEQ = [
    ("feature_extractor.conv_layers.{i}.conv.", "feature_extractor.conv_layers.{i}.0."),
    ("feature_extractor.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2."),
    ("feature_projection.layer_norm.", "layer_norm."),
    ("feature_projection.projection.", "post_extract_proj."),
    ("masked_spec_embed", "mask_emb"),
    ("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias"),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.layers.{i}.attention.", "encoder.layers.{i}.self_attn."),
    ("encoder.layers.{i}.layer_norm.", "encoder.layers.{i}.self_attn_layer_norm."),
    ("encoder.layers.{i}.feed_forward.intermediate_dense.", "encoder.layers.{i}.fc1."),
    ("encoder.layers.{i}.feed_forward.output_dense.", "encoder.layers.{i}.fc2."),
    ("encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.final_layer_norm."),
]


def to_fairseq_names(hf_sd: dict[str, torch.Tensor], new_weight_norm: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in hf_sd.items():
        if k.startswith("encoder.pos_conv_embed.conv.parametrizations.weight.original"):
            j = k[-1]
            out[f"encoder.pos_conv.0.parametrizations.weight.original{j}" if new_weight_norm
                else "encoder.pos_conv.0." + ("weight_g" if j == "0" else "weight_v")] = v
            continue
        for hf, fs in HF_TO_FAIRSEQ:
            for i in range(8):
                h, f = hf.format(i=i), fs.format(i=i)
                if k.startswith(h):
                    out[f + k[len(h):]] = v
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"unmapped {k}")
    return out


@pytest.fixture(scope="module")
def hf_ref():
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
        conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False, feat_proj_layer_norm=True,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    return transformers.HubertModel(cfg).eval()


def fairseq_checkpoint(hf_ref, path: str, new_weight_norm: bool = False) -> dict:
    torch.manual_seed(1)
    sd = to_fairseq_names(hf_ref.state_dict(), new_weight_norm)
    sd["final_proj.weight"], sd["final_proj.bias"] = torch.randn(32, 64), torch.randn(32)
    sd["label_embs_concat"] = torch.randn(K + 4, 32)
    model_cfg = {"_name": "hubert", "label_rate": 50.0, "extractor_mode": "default",
                 "encoder_layers": 2, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128,
                 "encoder_attention_heads": 4, "activation_fn": "gelu", "layer_type": "transformer",
                 "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
                 "encoder_layerdrop": 0.05, "dropout_input": 0.1, "dropout_features": 0.1,
                 "final_dim": 32, "untie_final_proj": True, "layer_norm_first": False,
                 "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
                 "conv_bias": False, "logit_temp": 0.1, "feature_grad_mult": 0.1, "mask_length": 10,
                 "mask_prob": 0.8, "mask_selection": "static", "conv_pos": 16, "conv_pos_groups": 4}
    # fairseq pickles its Dictionary into task_state: make one whose package is not installed here
    fake = types.ModuleType("fairseq.data.dictionary")
    Dictionary = type("Dictionary", (), {"__module__": "fairseq.data.dictionary"})
    fake.Dictionary = Dictionary
    names = ("fairseq", "fairseq.data", "fairseq.data.dictionary")
    sys.modules.update({n: fake for n in names})
    try:
        d = Dictionary()
        d.symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(K)]
        ckpt = {"cfg": {"model": model_cfg, "task": {"labels": ["km"]}}, "model": sd,
                "task_state": {"dictionaries": [d]}, "optimizer_history": []}
        buf = io.BytesIO()
        torch.save(ckpt, buf)
    finally:
        for n in names:
            sys.modules.pop(n, None)
    storage.atomic_write(path, buf.getvalue())
    return sd


@pytest.mark.parametrize("new_weight_norm", [False, True])
def test_load_fairseq_matches_transformers(hf_ref, tmp_path, new_weight_norm):
    path = str(tmp_path / "checkpoint_best.pt")
    sd = fairseq_checkpoint(hf_ref, path, new_weight_norm)
    model = load_fairseq(path)
    assert isinstance(model, HubertPretrainModel) and not model.training
    cfg = model.cfg
    assert (cfg.num_layers, cfg.embed_dim, cfg.conv_pos, cfg.final_dim) == (2, 64, 16, 32)
    assert cfg.conv_layers == ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
    assert (cfg.mask_prob, cfg.layerdrop, cfg.feature_grad_mult) == (0.8, 0.05, 0.1)
    assert model.num_classes == K
    torch.testing.assert_close(model.label_embs.detach(), sd["label_embs_concat"][4:])
    torch.testing.assert_close(model.final_proj.weight.detach(), sd["final_proj.weight"])
    torch.testing.assert_close(model.mask_emb.detach(), hf_ref.masked_spec_embed.detach())
    wav = torch.randn(2, 9_000)
    with torch.no_grad():
        expect = hf_ref(wav, output_hidden_states=True).hidden_states
        got = model.encoder.hidden_states(wav)
    for g, e in zip(got, expect, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)


def test_load_fairseq_rejects_non_checkpoints(tmp_path):
    path = str(tmp_path / "x.pt")
    torch.save({"weights": 1}, path)
    with pytest.raises(BadInput, match="not a fairseq checkpoint"):
        load_fairseq(path)
    with pytest.raises(BadInput, match="not found"):
        load_fairseq(str(tmp_path / "missing.pt"))


def test_load_model_from_trainer_checkpoint(storage_root):
    torch.manual_seed(2)
    cfg = HubertConfig.preset("tiny", ["num_layers=2"])
    pre = HubertPretrainModel(cfg, K)
    wav = torch.randn(1, 7_000)
    with torch.no_grad():
        expect = pre.encoder.eval().hidden_states(wav)
    # DDP-wrapped state_dict of the pretraining model, plus optimizer-ish extras
    ckpt = {"model_config": cfg.to_dict(), "step": 3, "optimizer": {"lr": 1e-3},
            "model": {"module." + k: v for k, v in pre.state_dict().items()}}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    storage.atomic_write(storage_root + "/ckpt/step-00000003.pt", buf.getvalue())
    save_checkpoint_model(pre.encoder, storage_root + "/enc.pt")
    for url in (storage_root + "/ckpt/step-00000003.pt", storage_root + "/enc.pt"):
        model = load_model(url)
        assert not model.training and model.cfg == cfg
        with torch.no_grad():
            for g, e in zip(model.hidden_states(wav), expect, strict=True):
                torch.testing.assert_close(g, e, atol=0, rtol=0)
    with pytest.raises(BadInput, match="neither"):
        load_model(storage_root + "/nothing-here")


def test_load_model_rejects_mismatched_config(tmp_path):
    cfg = HubertConfig.preset("tiny")
    enc = HubertPretrainModel(cfg, K).encoder
    torch.save({"model_config": {**cfg.to_dict(), "num_layers": 5}, "model": enc.state_dict()},
               tmp_path / "bad.pt")
    with pytest.raises(BadInput, match="does not match"):
        load_model(str(tmp_path / "bad.pt"))


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_import_then_export(hf_ref, tmp_path, storage_root):
    fs_path = str(tmp_path / "fs.pt")
    fairseq_checkpoint(hf_ref, fs_path)
    out = storage_root + "/imported"
    assert run_cli("model", "import", "--fairseq", fs_path, "--out", out) == 0
    assert storage.is_committed(out)
    assert {"config.json", "model.safetensors", "pretrain.pt"} <= set(storage.listdir(out))
    wav = torch.randn(1, 6_000)
    with torch.no_grad():
        expect = hf_ref(wav, output_hidden_states=True).hidden_states
        got = load_model(out).hidden_states(wav)
    for g, e in zip(got, expect, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)
    exported = storage_root + "/exported"
    assert run_cli("model", "export", "--checkpoint", out + "/pretrain.pt", "--out", exported) == 0
    if storage.local_path(exported) is not None:
        with torch.no_grad():
            theirs = transformers.HubertModel.from_pretrained(exported).eval()(wav).last_hidden_state
        torch.testing.assert_close(theirs, expect[-1], atol=1e-4, rtol=0)


def test_cli_errors_are_one_line(tmp_path, capsys):
    from mhubert.cli import main

    assert main(["model", "export", "--checkpoint", str(tmp_path / "nope.pt"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
