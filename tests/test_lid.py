"""LID head, split, metrics and the train/evaluate commands, pinned against transformers and sklearn."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from mhubert.errors import BadInput
from mhubert.lid.features import stratified_split
from mhubert.lid.head import LidClassifier, LidHeadConfig, load_head, mean_pool, save_head
from mhubert.lid.metrics import classification_report


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mhubert.model import hubert_tiny, save_hf
    from mhubert.model.convert import save_checkpoint_model

    torch.manual_seed(0)
    model = hubert_tiny().eval()
    d = tmp_path_factory.mktemp("lid_model")
    save_checkpoint_model(model, str(d / "model.pt"))
    save_hf(model, str(d / "hf"))
    return {"model": model, "ckpt": str(d / "model.pt"), "hf": str(d / "hf")}


@pytest.fixture(scope="module")
def toy_manifest(tmp_path_factory):
    """Two separable 'languages': tones (ton) and white noise (noi), 12 x 0.5-0.9 s each."""
    from mhubert.corpus.manifest import Manifest, ManifestEntry

    root = tmp_path_factory.mktemp("lid_toy")
    rng = np.random.default_rng(0)
    entries = []
    for lang in ("noi", "ton"):
        os.makedirs(root / "toy" / lang)
        for i in range(12):
            n = int(16000 * rng.uniform(0.5, 0.9))
            t = np.arange(n) / 16000
            x = (0.5 * np.sin(2 * np.pi * rng.uniform(150, 500) * t) if lang == "ton"
                 else 0.3 * rng.standard_normal(n)).astype(np.float32)
            rel = f"toy/{lang}/{i:02d}.wav"
            sf.write(str(root / rel), x, 16000, subtype="PCM_16")
            entries.append(ManifestEntry(rel, n, lang, "toy"))
    url = str(root / "manifest.tsv")
    Manifest(str(root), entries).write(url)
    return url


def test_head_equals_transformers_weighted_layer_sum(tiny):
    """Our head on our hidden states == HubertForSequenceClassification(use_weighted_layer_sum) with an
    identity projector, on the same weights and audio."""
    import transformers

    ref = transformers.HubertForSequenceClassification.from_pretrained(
        tiny["hf"], use_weighted_layer_sum=True, classifier_proj_size=64, num_labels=3).eval()
    head = LidClassifier(LidHeadConfig(num_layers=4, dim=64, num_classes=3))
    torch.manual_seed(1)
    with torch.no_grad():
        head.layer_weights.normal_()
        ref.layer_weights.copy_(head.layer_weights)
        ref.projector.weight.copy_(torch.eye(64))
        ref.projector.bias.zero_()
        ref.classifier.weight.copy_(head.classifier.weight)
        ref.classifier.bias.copy_(head.classifier.bias)
        wav = torch.randn(1, 12000)
        expected = ref(wav).logits
        got = head.forward_hidden(tiny["model"].hidden_states(wav), None)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_uniform_initial_layer_weights():
    head = LidClassifier(LidHeadConfig(num_layers=12, dim=8, num_classes=2))
    torch.testing.assert_close(head.layer_mix(), torch.full((13,), 1 / 13))


def test_mean_pool_ignores_padding():
    a, b = torch.randn(3, 5, 4), torch.randn(3, 2, 4)  # 3 layers; utterances of 5 and 2 frames
    padded = [torch.stack([a[k], torch.cat([b[k], torch.full((3, 4), 99.0)])]) for k in range(3)]
    pooled = mean_pool(padded, torch.tensor([5, 2]))
    torch.testing.assert_close(pooled[0], a.mean(dim=1))
    torch.testing.assert_close(pooled[1], b.mean(dim=1))


def test_stratified_split_is_deterministic_and_stratified():
    langs = ["en"] * 10 + ["fr"] * 5 + ["sw"] * 1 + ["de"] * 2
    train, valid = stratified_split(langs, 0.2, seed=3)
    assert (train, valid) == stratified_split(langs, 0.2, seed=3)
    assert sorted(train + valid) == list(range(len(langs))) and not set(train) & set(valid)
    count = {lang: sum(langs[i] == lang for i in valid) for lang in set(langs)}
    assert count == {"en": 2, "fr": 1, "sw": 0, "de": 1}
    assert stratified_split(langs, 0.2, seed=4) != (train, valid)


def test_report_matches_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 60).tolist()
    y_pred = [y if rng.random() < 0.6 else int(rng.integers(0, 3)) for y in y_true]  # class 3 under-predicted
    labels = ["a", "b", "c", "d"]
    rep = classification_report(y_true, y_pred, labels)
    kw = {"labels": list(range(4)), "average": None, "zero_division": 0}
    np.testing.assert_allclose([rep["per_language"][x]["f1"] for x in labels], f1_score(y_true, y_pred, **kw))
    np.testing.assert_allclose([rep["per_language"][x]["precision"] for x in labels],
                               precision_score(y_true, y_pred, **kw))
    np.testing.assert_allclose([rep["per_language"][x]["recall"] for x in labels],
                               recall_score(y_true, y_pred, **kw))
    assert rep["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert rep["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=list(range(4)), average="macro",
                                                     zero_division=0))
    assert rep["confusion"]["matrix"] == confusion_matrix(y_true, y_pred, labels=list(range(4))).tolist()
    # a class never predicted nor present
    rep2 = classification_report([0, 0, 1], [0, 1, 1], ["a", "b", "z"])
    assert rep2["per_language"]["z"]["f1"] == 0.0


def test_save_load_roundtrip_and_errors(tmp_path):
    head = LidClassifier(LidHeadConfig(num_layers=2, dim=8, num_classes=2))
    torch.nn.init.normal_(head.layer_weights)
    save_head(head, ["en", "fr"], str(tmp_path / "lid"))
    loaded, labels = load_head(str(tmp_path / "lid"))
    assert labels == ["en", "fr"]
    x = torch.randn(3, 3, 8)
    torch.testing.assert_close(loaded(x), head(x))
    with pytest.raises(BadInput, match="no LID head"):
        load_head(str(tmp_path / "nothing"))
    with pytest.raises(BadInput, match="labels"):
        save_head(head, ["en"], str(tmp_path / "bad"))
    with pytest.raises(BadInput, match="expects"):
        head(torch.randn(3, 2, 8))


def test_train_and_evaluate_cli_on_separable_toy(tiny, toy_manifest, tmp_path, monkeypatch, capsys):
    from sklearn.metrics import f1_score

    from mhubert.cli import main

    out, ev = str(tmp_path / "lid"), str(tmp_path / "eval")
    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", toy_manifest, "--out", out,
                 "--set", "epochs=150", "--set", "valid_fraction=0.25"]) == 0
    for name in ("head.pt", "labels.json", "metrics.json", "split.json", "features.pt", "_SUCCESS",
                 "confusion_matrix.png", "confusion_matrix.json"):
        assert os.path.exists(os.path.join(out, name)), name
    held_out = json.load(open(os.path.join(out, "metrics.json")))
    assert held_out["split"] == "valid" and held_out["num_utterances"] == 6 and held_out["accuracy"] >= 0.8
    assert json.load(open(os.path.join(out, "labels.json"))) == ["noi", "ton"]

    assert main(["lid", "evaluate", "--model", tiny["ckpt"], "--lid", out, "--manifest", toy_manifest,
                 "--out", ev]) == 0
    rep = json.load(open(os.path.join(ev, "metrics.json")))
    assert rep["accuracy"] >= 0.9 and rep["num_utterances"] == 24  # chance is 0.5
    cm = json.load(open(os.path.join(ev, "confusion_matrix.json")))
    assert cm["labels"] == ["noi", "ton"] and np.array(cm["matrix"]).sum() == 24
    # F1 in the report equals sklearn's on the same predictions (rebuilt from the confusion matrix)
    m = np.array(cm["matrix"])
    y_true = [i for i in range(2) for j in range(2) for _ in range(m[i, j])]
    y_pred = [j for i in range(2) for j in range(2) for _ in range(m[i, j])]
    np.testing.assert_allclose([rep["per_language"][x]["f1"] for x in ("noi", "ton")],
                               f1_score(y_true, y_pred, average=None, labels=[0, 1], zero_division=0))
    with open(os.path.join(ev, "confusion_matrix.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # the head records how its features were pooled
    head, _ = load_head(out)
    assert head.extraction == {"max_seconds": 30.0, "normalize_audio": True}
    # a second training run with the same settings reuses the committed head (no extraction);
    # with other settings it stops, and with --on-change force retrains from the cached features
    import mhubert.lid.features as lid_features

    def boom(*a, **k):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(lid_features, "extract_pooled", boom)
    before = open(os.path.join(out, "_SUCCESS")).read()
    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", toy_manifest, "--out", out,
                 "--set", "epochs=150", "--set", "valid_fraction=0.25"]) == 0
    assert open(os.path.join(out, "_SUCCESS")).read() == before
    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", toy_manifest, "--out", out,
                 "--set", "lid.epochs=100", "--set", "valid_fraction=0.25"]) == 2
    assert "lid.epochs: 150 -> 100" in capsys.readouterr().err
    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", toy_manifest, "--out", out,
                 "--set", "lid.epochs=100", "--set", "valid_fraction=0.25", "--on-change", "force"]) == 0
    assert open(os.path.join(out, "_SUCCESS")).read() != before
    # held-out evaluation uses the saved split
    monkeypatch.undo()
    assert main(["lid", "evaluate", "--model", tiny["ckpt"], "--lid", out, "--manifest", toy_manifest,
                 "--out", ev + "v", "--split", "valid"]) == 0
    assert json.load(open(os.path.join(ev + "v", "metrics.json")))["num_utterances"] == 6


def test_cli_errors_are_one_line(tiny, tmp_path, capsys):
    from mhubert.cli import main

    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", str(tmp_path / "none.tsv"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["lid", "train", "--model", tiny["ckpt"], "--manifest", "x", "--out", "y",
                 "--set", "valid_fraction=2"]) == 2
    assert "valid_fraction" in capsys.readouterr().err
