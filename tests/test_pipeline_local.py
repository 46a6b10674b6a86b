"""The pipeline through kfp.local's SubprocessRunner: one component on its own, and a whole
1-iteration tiny run on a minuscule synthetic corpus (`mhubert pipeline run --local`)."""

from __future__ import annotations

import json

import pytest

from mhubert.cli import main


@pytest.fixture
def kfp_local(tmp_path):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    return tmp_path


def test_prepare_component(kfp_local, synth_corpus):
    from components.prepare import prepare
    from mhubert.corpus.manifest import Manifest

    out = str(kfp_local / "run")
    task = prepare(corpus_uri=synth_corpus["root"], output_root=out)
    url = task.outputs["Output"]
    assert url == f"{out}/corpus/manifest.tsv"
    m = Manifest.read(url)
    reference = Manifest.read(synth_corpus["manifest"])
    assert len(m) == len(reference) > 0
    stats = task.outputs["stats"].metadata
    assert stats["utterances"] == len(reference)
    assert stats["languages"] == len(reference.languages)
    hours = sum(e.n_samples for e in reference.entries) / 16000 / 3600
    assert stats["hours"] == pytest.approx(hours, rel=1e-6)
    assert task.outputs["manifest"].metadata["uri"] == url
    with open(task.outputs["report"].path) as f:
        assert "data:image/png;base64," in f.read()


def test_run_needs_a_target(tmp_path, capsys):
    assert main(["pipeline", "run", "--corpus", str(tmp_path), "--root", str(tmp_path / "o")]) == 2
    assert "--local" in capsys.readouterr().err


def test_run_rejects_bad_shards(tmp_path, capsys):
    rc = main(["pipeline", "run", "--local", "--corpus", str(tmp_path), "--root", str(tmp_path / "o"),
               "--shards", "0"])
    assert rc == 2 and "--shards" in capsys.readouterr().err


@pytest.mark.slow
def test_local_run_one_iteration_tiny(tmp_path, synth_corpus, capsys):
    transformers = pytest.importorskip("transformers")
    from mhubert import storage
    from mhubert.artifacts import Labels
    from mhubert.config import load_preset
    from mhubert.corpus.manifest import Manifest

    root = str(tmp_path / "run")
    rc = main(["pipeline", "run", "--local", "--corpus", synth_corpus["root"], "--root", root,
               "--preset", "tiny", "--iterations", "1", "--shards", "2", "--no-lid",
               "--train-set", "train.max_update=4", "--train-set", "train.save_interval_updates=2",
               "--train-set", "train.log_interval=1", "--cluster-set", "mode=exact"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"{root}/serving/model" in out and f"{root}/iter1/labels" in out
    # labels: one sequence per manifest utterance at 100 Hz (MFCC frames), from both shards
    manifest = Manifest.read(f"{root}/corpus/manifest.tsv")
    flat, offsets = Labels(f"{root}/iter1/labels").read()
    assert len(offsets) == len(manifest) + 1
    info = Labels(f"{root}/iter1/labels").info
    assert info["label_rate"] == 100
    k = load_preset("tiny")["iterations"][0]["num_clusters"]
    assert flat.max() < k
    for i, e in enumerate(manifest.entries):
        frames = 1 + (e.n_samples - 400) // 160
        assert abs(int(offsets[i + 1] - offsets[i]) - frames) <= 1
    # the served model loads in stock transformers with the tiny architecture
    reg = json.loads(storage.read_text(f"{root}/serving/registry.json"))
    assert reg["model"] == f"{root}/serving/model" and reg["iteration"] == 1
    hf = transformers.HubertModel.from_pretrained(reg["model"])
    assert hf.config.num_hidden_layers == load_preset("tiny")["model"]["num_layers"]
    train_info = storage.read_json(f"{root}/iter1/train/_SUCCESS")
    assert train_info["step"] == 4
