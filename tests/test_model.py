"""HuBERT model: parity with transformers, padding invariance, layer extraction, pretraining loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers

from mhubert.errors import BadInput
from mhubert.features.ssl import layer_features
from mhubert.model import HubertConfig, HubertModel, HubertPretrainModel, load_hf, save_hf
from mhubert.model.loss import pretrain_loss

TOL = 1e-4


def small_hf_config(**kw) -> transformers.HubertConfig:
    """The mHuBERT-147 architecture (group norm, no conv bias, post-LN, feature LN), shrunk."""
    args = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False,
                feat_proj_layer_norm=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    args.update(kw)
    return transformers.HubertConfig(**args)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.HubertModel(small_hf_config()).eval()
    d = tmp_path_factory.mktemp("hf")
    model.save_pretrained(d)
    return str(d), model


def test_base_encoder_has_mhubert147_parameter_count():
    # transformers' HubertModel(conv_bias=False, feat_proj_layer_norm=True) has 94,371,712 (378 MB)
    with torch.device("meta"):
        model = HubertModel(HubertConfig.preset("base"))
    assert sum(p.numel() for p in model.parameters()) == 94_371_712


def test_load_hf_matches_transformers_hidden_states(hf_dir):
    path, ref = hf_dir
    ours = load_hf(path)
    assert not ours.training
    wav = torch.randn(2, 12_345)
    with torch.no_grad():
        expect = ref(wav, output_hidden_states=True).hidden_states
        got = ours.hidden_states(wav)
    assert len(got) == len(expect) == 3
    for g, e in zip(got, expect, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, atol=TOL, rtol=0)


def test_save_hf_round_trip_through_transformers(storage_root):
    torch.manual_seed(1)
    ours = HubertModel(HubertConfig.preset("tiny", ["num_layers=2"])).eval()
    save_hf(ours, storage_root + "/model")
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        expect = ours.hidden_states(wav)
        back = load_hf(storage_root + "/model").hidden_states(wav)
    for g, e in zip(back, expect, strict=True):
        torch.testing.assert_close(g, e, atol=0, rtol=0)
    if storage_root.startswith("s3://"):
        return
    ref = transformers.HubertModel.from_pretrained(storage_root + "/model").eval()
    torch.testing.assert_close(ref.masked_spec_embed.detach(), ours.mask_emb.detach())
    with torch.no_grad():
        theirs = ref(wav, output_hidden_states=True).hidden_states
    for g, e in zip(theirs, expect, strict=True):
        torch.testing.assert_close(g, e, atol=TOL, rtol=0)


@pytest.mark.parametrize("preset", ["base", "tiny"])
def test_frame_lengths_follow_transformers_formula(preset):
    cfg = HubertConfig.preset(preset)
    convs = cfg.conv_layers
    ref = transformers.HubertModel(small_hf_config(conv_dim=[c for c, _, _ in convs],
                                                   conv_kernel=[k for _, k, _ in convs],
                                                   conv_stride=[s for _, _, s in convs]))
    with torch.device("meta"):
        model = HubertModel(cfg)
    lengths = torch.tensor([359, 360, 400, 401, 679, 680, 719, 720, 16_000, 250_000])
    expect = ref._get_feat_extract_output_lengths(lengths)
    torch.testing.assert_close(model.frame_lengths(lengths), expect)
    assert [model.num_frames(int(n)) for n in lengths] == expect.tolist()
    assert model.num_frames(16_000) == 49  # 50 Hz frames either way
    assert HubertConfig().receptive_field == 400 and HubertConfig().total_stride == 320


@pytest.mark.parametrize("grad", [False, True], ids=["inference-per-utterance-extractor",
                                                     "grad-batched-masked-extractor"])
def test_padding_never_changes_valid_outputs(grad):
    """Both extractor paths: CPU inference runs it per utterance, training (and export) batched with
    masked group-norm statistics."""
    torch.manual_seed(2)
    model = HubertModel(HubertConfig.preset("tiny", ["num_layers=2"])).eval()
    lengths = torch.tensor([16_000, 9_000, 4_321])
    wav = torch.randn(3, 16_000) * 3  # loud noise in the padding makes leaks visible
    with torch.set_grad_enabled(grad):
        batched = [h.detach() for h in model.hidden_states(wav, lengths)]
    with torch.no_grad():
        frames = model.frame_lengths(lengths)
        for b in range(3):
            alone = model.hidden_states(wav[b:b + 1, : lengths[b]])
            for layer, (x, y) in enumerate(zip(batched, alone, strict=True)):
                assert y.shape[1] == frames[b]
                torch.testing.assert_close(x[b, : frames[b]], y[0], atol=TOL, rtol=0,
                                           msg=f"utterance {b}, hidden state {layer}")


def test_extract_layer_stops_at_the_layer():
    torch.manual_seed(3)
    model = HubertModel(HubertConfig.preset("tiny")).eval()
    calls = [0] * len(model.layers)
    for i, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    wav, lengths = torch.randn(2, 6_000), torch.tensor([6_000, 5_000])
    with torch.no_grad():
        every = model.hidden_states(wav, lengths)
    assert calls == [1] * len(model.layers)
    for layer in range(len(model.layers) + 1):
        calls[:] = [0] * len(model.layers)
        with torch.no_grad():
            feats, flen = model.extract_layer(wav, lengths, layer)
        assert calls == [1] * layer + [0] * (len(model.layers) - layer)
        torch.testing.assert_close(flen, model.frame_lengths(lengths))
        torch.testing.assert_close(feats, every[layer], atol=0, rtol=0)


def test_layer_features_equal_transformers_layer(hf_dir):
    path, ref = hf_dir
    model = load_hf(path).train()
    wav = torch.randn(1, 10_000)
    feats, flen = layer_features(model, wav, None, 1)
    with torch.no_grad():
        expect = ref(wav, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(feats, expect, atol=TOL, rtol=0)
    assert flen.tolist() == [expect.shape[1]] and not feats.requires_grad
    assert model.training  # mode restored


@pytest.mark.parametrize("call, message", [
    (lambda m: m.extract_layer(torch.randn(8000), None, 1), "batch, samples"),
    (lambda m: m.extract_layer(torch.randn(1, 300), None, 1), "too short"),
    (lambda m: m.extract_layer(torch.randn(1, 8000), None, 9), "layer must be"),
    (lambda m: m.extract_layer(torch.randn(2, 8000), torch.tensor([8000, 9000]), 1), "lengths must be"),
    (lambda m: m.hidden_states(torch.randn(2, 8000), torch.tensor([8000])), "lengths must have shape"),
])
def test_bad_input_is_named(call, message):
    model = HubertModel(HubertConfig.preset("tiny"))
    with pytest.raises(BadInput, match=message):
        call(model)


def test_config_rejects_unknown_and_bad_fields():
    with pytest.raises(BadInput, match="pred_nomask_weight"):
        HubertConfig.preset("tiny", ["pred_masked_weight=0", "pred_nomask_weight=0"])
    with pytest.raises(BadInput, match="pred_masked_weight"):
        HubertConfig.preset("tiny", ["pred_masked_weight=-1"])
    with pytest.raises(BadInput, match="unknown"):
        HubertConfig.preset("tiny", ["hidden=3"])
    with pytest.raises(BadInput, match="divisible"):
        HubertConfig.preset("tiny", ["num_heads=3"])
    assert HubertConfig.preset("base") == HubertConfig()


# -- pretraining -------------------------------------------------------------------------------
def reference_loss(model: HubertPretrainModel, wav, labels_50hz, mask, tmp_path):
    """fairseq's loss computed with transformers' encoder (mask_time_indices = our mask)."""
    save_hf(model.encoder, str(tmp_path / "ref"))
    ref = transformers.HubertModel.from_pretrained(str(tmp_path / "ref")).eval()
    with torch.no_grad():
        feats = ref.feature_extractor(wav)
        x = ref(wav, mask_time_indices=mask).last_hidden_state
        logits = F.cosine_similarity(model.final_proj(x)[:, :, None], model.label_embs[None, None],
                                     dim=-1) / model.cfg.logit_temp
    n = int(mask.sum())
    ce_m = F.cross_entropy(logits[mask], labels_50hz[mask], reduction="sum")
    ce_u = F.cross_entropy(logits[~mask], labels_50hz[~mask], reduction="sum")
    # fairseq hubert_criterion: weighted sums over masked and unmasked frames / number masked
    loss = (model.cfg.pred_masked_weight * ce_m + model.cfg.pred_nomask_weight * ce_u) / n
    return loss + model.cfg.feature_pen_weight * feats.pow(2).mean(), n


@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, 1.0), (0.5, 2.0)])
def test_pretrain_loss_matches_reference_at_100_and_50_hz(tmp_path, weights):
    torch.manual_seed(4)
    cfg = HubertConfig.preset("tiny", ["num_layers=2", f"pred_masked_weight={weights[0]}",
                                       f"pred_nomask_weight={weights[1]}"])
    model = HubertPretrainModel(cfg, num_classes=12).eval()
    wav = torch.randn(2, 16_000)  # 49 frames
    labels_50 = torch.randint(0, 12, (2, 49))
    labels_100 = torch.full((2, 98), -7)
    labels_100[:, ::2] = labels_50  # fairseq feat2tar takes every second 100 Hz label
    labels_100[:, 1::2] = (labels_50 + 5) % 12
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, 3:20] = mask[1, 10:15] = mask[1, 30:45] = True
    expect, n_masked = reference_loss(model, wav, labels_50, mask, tmp_path)
    with torch.no_grad():
        out50 = model.loss(model(wav, None, labels_50, 50, mask=mask))
        out100 = pretrain_loss(model(wav, None, labels_100, 100, mask=mask), model.cfg)
    for out in (out50, out100):
        torch.testing.assert_close(out["loss"], expect, atol=1e-4, rtol=1e-5)
        assert int(out["count_m"]) == int(out["sample_size"]) == n_masked
        assert int(out["count_u"]) == 2 * 49 - n_masked


def test_pretrain_drops_frames_without_labels_and_ignores_negative_labels():
    torch.manual_seed(5)
    model = HubertPretrainModel(HubertConfig.preset("tiny", ["num_layers=1"]), num_classes=5).eval()
    wav = torch.randn(2, 16_000)
    mask = torch.ones(2, 49, dtype=torch.bool)
    labels = torch.randint(0, 5, (2, 30))
    labels[1, 10:] = -1
    with torch.no_grad():
        out = model.loss(model(wav, torch.tensor([16_000, 16_000]), labels, 50, mask=mask))
    assert int(out["count_m"]) == 30 + 10
    with torch.no_grad():
        out = model.loss(model(wav, torch.tensor([16_000, 8_000]), torch.randint(0, 5, (2, 60)), 50,
                               mask=mask))
    assert int(out["count_m"]) == 49 + 24  # padded frames of row 1 are not scored


def test_pretrain_train_step_reaches_every_parameter():
    torch.manual_seed(6)
    model = HubertPretrainModel(HubertConfig.preset("tiny"), num_classes=20).train()
    wav, lengths = torch.randn(2, 24_000), torch.tensor([24_000, 20_000])
    out = model.loss(model(wav, lengths, torch.randint(0, 20, (2, 150)), 100))
    assert torch.isfinite(out["loss"]) and int(out["count_m"]) > 0
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_feature_grad_mult_scales_extractor_gradient():
    torch.manual_seed(7)
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(7)
        model = HubertPretrainModel(HubertConfig.preset("tiny", [f"feature_grad_mult={mult}"]), 8).eval()
        mask = torch.zeros(1, 24, dtype=torch.bool)
        mask[0, 5:15] = True
        out = model(torch.randn(1, 8_000), None, torch.randint(0, 8, (1, 24)), 50, mask=mask)
        model.loss(out)["loss"].backward()
        grads[mult] = model.encoder.feature_extractor.conv_layers[-1].conv.weight.grad.clone()
    torch.testing.assert_close(grads[0.1], grads[1.0] * 0.1, atol=1e-6, rtol=1e-4)


def test_pretrain_bad_label_rate():
    model = HubertPretrainModel(HubertConfig.preset("tiny"), 5)
    with pytest.raises(BadInput, match="label_rate"):
        model(torch.randn(1, 8000), None, torch.zeros(1, 20, dtype=torch.long), 75)
    with pytest.raises(BadInput, match="num_classes"):
        model(torch.randn(1, 8000), None, torch.full((1, 20), 5), 50)


def test_load_hf_reads_old_weight_norm_names_from_pytorch_model_bin(hf_dir, tmp_path):
    import json
    import shutil

    path, ref = hf_dir
    sd = {k.replace("parametrizations.weight.original0", "weight_g")
          .replace("parametrizations.weight.original1", "weight_v"): v for k, v in ref.state_dict().items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in sd
    torch.save(sd, tmp_path / "pytorch_model.bin")
    shutil.copy(path + "/config.json", tmp_path / "config.json")
    assert "mhubert_model_config" not in json.loads((tmp_path / "config.json").read_text())
    wav = torch.randn(1, 5_000)
    with torch.no_grad():
        torch.testing.assert_close(load_hf(str(tmp_path))(wav), ref(wav).last_hidden_state, atol=TOL, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_under_bf16():
    torch.manual_seed(8)
    model = HubertPretrainModel(HubertConfig.preset("tiny"), 10).eval()
    wav, lengths = torch.randn(2, 16_000), torch.tensor([16_000, 11_000])
    with torch.no_grad():
        cpu = model.encoder.hidden_states(wav, lengths)
        gpu = model.cuda().encoder.hidden_states(wav.cuda(), lengths.cuda())
    frames = model.encoder.frame_lengths(lengths)
    for c, g in zip(cpu, gpu, strict=True):
        for b in range(2):
            torch.testing.assert_close(g[b, : frames[b]].cpu(), c[b, : frames[b]], atol=1e-3, rtol=1e-3)
    model.train()
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.loss(model(wav.cuda(), lengths.cuda(), torch.randint(0, 10, (2, 100)).cuda(), 100,
                               generator=gen))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and int(out["count_m"]) > 0
