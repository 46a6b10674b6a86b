"""``mhubert model export --format onnx|onnx-int8|hf-classifier`` and ``mhubert serve --backend``:
ONNX Runtime against torch on padded batches at lengths other than the export's; transformers'
audio-classification pipeline against ``/v1/lid``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers.api_assets import make_assets, tone, wav_bytes

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(str(tmp_path_factory.mktemp("export_assets")))


@pytest.fixture(scope="module")
def onnx_dir(assets, tmp_path_factory):
    from mhubert.cli import main

    out = str(tmp_path_factory.mktemp("onnx"))
    assert main(["model", "export", "--checkpoint", assets["ckpt"], "--out", out, "--format", "onnx"]) == 0
    return out


def test_export_leaves_the_model_as_it_was(tmp_path):
    """The exporter restores its wrapper's mode on the whole tree: an eval model must stay in eval
    (a model with dropout would otherwise serve noisy vectors after `--backend onnx` exported it)."""
    from mhubert.model import HubertConfig, HubertModel
    from mhubert.model.onnx import export_onnx

    model = HubertModel(HubertConfig.preset("tiny", {"dropout": 0.5})).eval()
    x = torch.randn(1, 4000)
    with torch.no_grad():
        before = model.hidden_states(x)[-1]
    export_onnx(model, str(tmp_path / "mode.onnx"))
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model.hidden_states(x)[-1], before, atol=0, rtol=0)


def test_onnx_matches_torch_on_padded_batches(assets, onnx_dir):
    from mhubert.model import load_model
    from mhubert.model.onnx import open_session

    model = load_model(assets["ckpt"])
    sess = open_session(os.path.join(onnx_dir, "model.onnx"))
    assert [i.name for i in sess.get_inputs()] == ["wav", "lengths"]
    assert [o.name for o in sess.get_outputs()] == [f"hidden_{i}" for i in range(5)]
    g = torch.Generator().manual_seed(1)
    # the export traced a batch of 2 x 8000 samples; these differ in batch size, length and padding
    for lengths in ([12345, 7000, 3001, 401], [20011], [5000, 5000], [16000, 640, 9999]):
        lens = torch.tensor(lengths)
        wav = torch.randn(len(lengths), max(lengths), generator=g)
        for i, n in enumerate(lengths):
            wav[i, n:] = 0.0
        with torch.no_grad():
            ref = model.hidden_states(wav, lens)
        outs = sess.run(None, {"wav": wav.numpy(), "lengths": lens.numpy()})
        frames = model.frame_lengths(lens).tolist()
        assert len(outs) == len(ref) == 5
        for o, r in zip(outs, ref, strict=True):
            assert o.shape == tuple(r.shape)
            for i, t in enumerate(frames):
                np.testing.assert_allclose(o[i, :t], r[i, :t].numpy(), atol=1e-4, rtol=0)


def test_int8_keeps_the_feature_projection_fp32(onnx_dir, tmp_path):
    """``onnx-int8`` quantises every transformer layer's MatMul and leaves the feature projection
    (the conv features' only MatMul) in fp32, as measured best on trained base weights."""
    import onnx

    from mhubert.model.onnx import quantize_int8

    src = os.path.join(onnx_dir, "model.onnx")
    source = onnx.load(src).graph
    weights = {i.name for i in source.initializer}
    layer_matmuls = [n.name for n in source.node if n.op_type == "MatMul" and n.input[1] in weights
                     and n.name.startswith("/layers.")]
    graph = onnx.load(quantize_int8(src, str(tmp_path / "m8.onnx"))).graph
    floats = {n.name for n in graph.node if n.op_type == "MatMul"}
    integer = [n.name for n in graph.node if n.op_type == "MatMulInteger"]
    assert "/feature_proj/MatMul" in floats
    assert layer_matmuls and len(integer) == len(layer_matmuls)
    assert all(name.startswith("/layers.") for name in integer)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_serve_backends(assets, backend):
    """The API on ONNX Runtime: fp32 equals torch within 1e-4; int8 within cosine 0.99 (random weights)."""
    body = wav_bytes(tone(1.1, freq=280.0))
    ref_s = Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], eager_load=True)
    with TestClient(create_app(ref_s)) as c:
        ref = np.array(c.post("/v1/embeddings?layer=all", content=body).json()["embeddings"])
        ref_lid = c.post("/v1/lid", content=body).json()["languages"][0]["language"]
    s = Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], eager_load=True, backend=backend)
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/embeddings?layer=all", content=body)
        assert r.status_code == 200, r.text
        got = np.array(r.json()["embeddings"])
        assert c.get("/v1/models").json()["models"][0]["backend"] == backend
        lid = c.post("/v1/lid", content=body).json()["languages"][0]["language"]
    if backend == "onnx":
        np.testing.assert_allclose(got, ref, atol=1e-4)
        assert lid == ref_lid
    else:
        cos = (got * ref).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1))
        assert cos.min() >= 0.99, cos


def _standardised_head(assets, root: str) -> str:
    """The test head with non-trivial standardisation: random means, std factoring as a_l * c(d),
    learned-looking layer weights."""
    from helpers.api_assets import LID_LABELS

    from mhubert.lid.head import load_head, save_head

    head, _ = load_head(assets["lid"])
    g = torch.Generator().manual_seed(3)
    n, d = head.mean.shape
    with torch.no_grad():
        head.mean.copy_(torch.randn(n, d, generator=g) * 0.3)
        head.std.copy_(torch.rand(n, 1, generator=g).add(0.5) * torch.rand(1, d, generator=g).add(0.5))
        head.layer_weights.copy_(torch.randn(n, generator=g))
    save_head(head, LID_LABELS, root)
    return root


@pytest.mark.parametrize("standardised", [False, True], ids=["plain-head", "standardised-head"])
def test_hf_classifier_pipeline_top1_equals_v1_lid(assets, tmp_path, standardised):
    import transformers

    from mhubert.audio import decode
    from mhubert.cli import main

    out = str(tmp_path / "clf")
    lid = _standardised_head(assets, str(tmp_path / "lid")) if standardised else assets["lid"]
    assert main(["model", "export", "--checkpoint", assets["ckpt"], "--out", out, "--format", "hf-classifier",
                 "--lid", lid]) == 0
    for name in ("config.json", "preprocessor_config.json"):
        assert os.path.exists(os.path.join(out, name))
    cfg = transformers.AutoConfig.from_pretrained(out)
    assert cfg.use_weighted_layer_sum and cfg.id2label == {0: "en", 1: "fr", 2: "sw"}
    pipe = transformers.pipeline("audio-classification", model=out)
    with TestClient(create_app(Settings(model_uri=assets["ckpt"], lid_uri=lid, eager_load=True))) as c:
        for i, (sec, hz) in enumerate([(1.0, 220.0), (0.7, 410.0), (1.6, 130.0), (1.2, 760.0)]):
            body = wav_bytes(tone(sec, freq=hz, seed=i))
            ref = c.post("/v1/lid", content=body).json()["languages"]
            got = pipe(decode(body).numpy(), top_k=3)
            assert got[0]["label"] == ref[0]["language"]
            np.testing.assert_allclose([g["score"] for g in got], [r["probability"] for r in ref], atol=1e-3)


def test_hf_classifier_needs_lid(assets, tmp_path, capsys):
    from mhubert.cli import main

    assert main(["model", "export", "--checkpoint", assets["ckpt"], "--out", str(tmp_path / "x"),
                 "--format", "hf-classifier"]) == 2
    assert "--lid" in capsys.readouterr().err
