"""Continuing from a published model, run for real (issue 13 scope 5): an iteration-2 checkpoint in the
layout of mHuBERT-147's released fairseq ``.pt`` (tiny dimensions, :func:`mhubert.model.save_fairseq`)
and a plain faiss index (``faiss.write_index``, no marker of ours), then iteration 3 alone through
kfp.local (``pipeline run --local --iterations 3 --init-model X.pt --init-index Y.index``). The labels
must be that index's on that model's layer-4 features as torchaudio computes them from the fairseq
file, training must start from those weights, and iteration 3 must end evaluated and published."""

from __future__ import annotations

import re

import faiss
import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.fairseq_ref import load_torchaudio

from mhubert.cli import main

K = 12            # the published index's clusters (not the preset's K: the index decides)
LAYER = 4         # the tiny preset's iteration-3 layer (its last)


def _reference_features(ckpt: dict, manifest) -> list[np.ndarray]:
    """torchaudio's layer-LAYER output of the fairseq model on fairseq's input (soundfile's samples,
    layer-normalised as the task's ``normalize: true`` does)."""
    model = load_torchaudio(ckpt)
    out = []
    with torch.no_grad():
        for i in range(len(manifest)):
            wav, sr = sf.read(manifest.url_of(i), dtype="float32")
            assert sr == 16000
            x = torch.from_numpy(wav)
            x = torch.nn.functional.layer_norm(x, x.shape)[None]
            layers, _ = model.extract_features(x, num_layers=LAYER)
            out.append(layers[LAYER - 1][0].numpy())
    return out


@pytest.mark.slow
@pytest.mark.timeout(1500)  # one pipeline run; minutes only on a loaded machine
def test_iteration_3_from_a_fairseq_checkpoint_and_a_plain_faiss_index(synth_corpus, tmp_path, capsys):
    from mhubert.artifacts import Manifest, RunLayout
    from mhubert.eval.iteration import read_probes
    from mhubert.model import HubertConfig, HubertPretrainModel, load_model, save_fairseq

    # the "published" iteration-2 model: tiny dimensions, weights away from any fresh init
    torch.manual_seed(2)
    model = HubertPretrainModel(HubertConfig.preset("tiny"), 100).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pt = str(tmp_path / "mhubert147_iter2.pt")
    save_fairseq(model, pt, label_rate=50, num_updates=400_000)
    ckpt = torch.load(pt, map_location="cpu", weights_only=True)

    # and its k-means index on layer 4, written by faiss alone
    manifest = Manifest.read(synth_corpus["manifest"])
    feats = _reference_features(ckpt, manifest)
    x = np.concatenate(feats).astype(np.float32)
    km = faiss.Kmeans(x.shape[1], K, niter=10, seed=1)
    km.train(x)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(km.centroids)
    index_path = str(tmp_path / "mhubert147_iter2_layer4.index")
    faiss.write_index(index, index_path)

    root = str(tmp_path / "run")
    cmd = ["pipeline", "run", "--local", "--corpus", synth_corpus["root"], "--root", root,
           "--pipeline-root", str(tmp_path / "kfp"), "--preset", "tiny", "--iterations", "3",
           "--init-model", pt, "--init-index", index_path, "--shards", "2",
           # two updates at a learning rate that cannot move a weight by 1e-6: the trained model
           # must still be the published one
           "--set", "train.max_update=2", "--set", "train.warmup_updates=1", "--set", "train.lr=1e-9",
           "--set", "train.log_interval=1", "--cluster-set", "mode=exact", "--set", "lid.epochs=20",
           "--set", "superb.tasks=lid", "--set", "superb.max_steps=2"]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "iter3 cluster", "iter3 merge", "iter3 train", "iter3 evaluate", "publish"):
        assert re.search(rf"^ok {re.escape(stage)}\s+\d+\.\d s", out, re.M), (stage, out)
    run = RunLayout(root)
    it = run.iteration(3)
    assert not run.iteration(1).train.is_committed() and not run.iteration(2).train.is_committed()

    # labels: the published index's nearest centroid of the published model's layer-4 frames
    labels = it.labels
    assert labels.info["label_rate"] == 50
    flat, offsets = labels.read()
    assert len(offsets) == len(manifest) + 1
    _, ref = index.search(x, 1)
    ref = ref[:, 0]
    lens = [len(f) for f in feats]
    assert [int(offsets[i + 1] - offsets[i]) for i in range(len(manifest))] == lens
    agree = float((flat.astype(np.int64) == ref).mean())
    assert agree >= 0.99, agree
    assert flat.max() < K and len(np.unique(flat)) > K // 2
    assert not it.clustering.index.is_committed()        # no fit: the given index was used

    # training started from the published weights (and, at lr 1e-9, stayed there); a fresh
    # model of the same shape does not match them
    assert it.train.info["step"] == 2
    trained = load_model(it.train.model.url).state_dict()
    published = model.encoder.state_dict()
    assert set(trained) == set(published)
    for k, v in published.items():
        torch.testing.assert_close(trained[k], v, atol=1e-6, rtol=0, msg=k)
    fresh = HubertPretrainModel(HubertConfig.preset("tiny"), 100).encoder.state_dict()
    w = "feature_proj.weight"
    assert (fresh[w] - published[w]).abs().max() > 0.05

    # evaluated: the LID head and the probes ran on the new model, and FBANK's once, here (the
    # run's first iteration)
    assert it.eval.lid.is_committed()
    probes = read_probes(it.eval.superb_url)
    assert set(probes) == {"model", "fbank"} and set(probes["model"]) == {"lid"}
    assert probes["model"]["lid"]["upstream"] == it.train.model.url
    reg = run.serving.registry()
    assert reg["iteration"] == 3 and reg["source"] == it.train.model.url
