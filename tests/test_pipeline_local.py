"""The pipeline through kfp.local's SubprocessRunner: one component on its own, and a whole
1-iteration tiny run on a minuscule synthetic corpus (`mhubert pipeline run --local`)."""

from __future__ import annotations

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
@pytest.mark.timeout(1500)  # three pipeline invocations (the 2nd stops before work): ~4 min on idle 2 cores
def test_local_run_one_iteration_tiny(tmp_path, synth_corpus, capsys):
    """The whole pipeline once (the suite's only full run): quiet output, results where RunLayout
    says, a served model stock transformers loads. Then the stale-result rule: more updates on the
    same root stop before any work naming the setting; with --resume the model gets the new number of
    updates while every stage whose settings did not change is reused, with its line saying so."""
    import os
    import re

    import transformers

    from mhubert.artifacts import RunLayout
    from mhubert.config import load_preset

    root = str(tmp_path / "run")
    cmd = ["pipeline", "run", "--local", "--corpus", synth_corpus["root"], "--root", root,
           "--preset", "tiny", "--iterations", "1", "--shards", "2", "--no-lid",
           "--set", "train.max_update=4", "--train-set", "train.save_interval_updates=2",
           "--set", "train.log_interval=1", "--cluster-set", "mode=exact"]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    run = RunLayout(root)
    assert run.serving.model.url in out and run.iteration(1).labels.url in out
    # quiet: a line per task with its seconds, kfp's JSON and faiss's loader lines only in the log
    assert "executor" not in out and "swigfaiss" not in out and "{" not in out, out
    for stage in ("prepare", "iter1 cluster", "iter1 merge", "iter1 train", "iter1 evaluate", "publish"):
        assert re.search(rf"^ok {re.escape(stage)}\s+\d+\.\d s", out, re.M), (stage, out)
    assert re.search(r"^ok iter1 train\s+\d+\.\d s  4 updates", out, re.M), out
    log = re.search(r"full log: (\S+\.log)", out).group(1)
    assert "Executing task" in open(log).read()
    # labels: one sequence per manifest utterance at 100 Hz (MFCC frames), from both shards
    manifest = run.corpus.read_manifest()
    labels = run.iteration(1).labels
    flat, offsets = labels.read()
    assert len(offsets) == len(manifest) + 1
    assert labels.info["label_rate"] == 100
    k = load_preset("tiny")["iterations"][0]["num_clusters"]
    assert flat.max() < k
    for i, e in enumerate(manifest.entries):
        frames = 1 + (e.n_samples - 400) // 160
        assert abs(int(offsets[i + 1] - offsets[i]) - frames) <= 1
    # the served model loads in stock transformers with the tiny architecture
    reg = run.serving.registry()
    assert reg["model"] == run.serving.model.url and reg["iteration"] == 1
    hf = transformers.HubertModel.from_pretrained(reg["model"])
    assert hf.config.num_hidden_layers == load_preset("tiny")["model"]["num_layers"]
    assert run.iteration(1).train.info["step"] == 4
    # the pseudo-label quality report is in the iteration's evaluation
    assert run.iteration(1).eval.read_json("quality.json")["num_clusters"] > 0
    markers = {name: open(art.marker_url).read() for name, art in
               (("corpus", run.corpus), ("index", run.iteration(1).clustering.index),
                ("labels", run.iteration(1).labels))}
    # more updates on the same root: stops before any stage starts (in the preflight: no new kfp run
    # log), naming the setting and the choices
    logs = sorted(os.listdir(os.path.join(root, "_kfp")))
    assert main([*cmd, "--set", "train.max_update=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_update: 4 -> 6" in err[-1], err
    assert "--resume" in err[-1] and "--force" in err[-1], err
    assert sorted(os.listdir(os.path.join(root, "_kfp"))) == logs
    # --resume: training continues from its checkpoint to the new number of updates; the stages
    # before it, whose settings did not change, are reused, each saying so (KFP's cache is off)
    assert main([*cmd, "--set", "train.max_update=6", "--resume"]) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "iter1 cluster", "iter1 merge"):
        assert re.search(rf"^ok {stage}\s+\d+\.\d s  reused", out, re.M), (stage, out)
    assert {name: open(art.marker_url).read() for name, art in
            (("corpus", run.corpus), ("index", run.iteration(1).clustering.index),
             ("labels", run.iteration(1).labels))} == markers
    assert run.iteration(1).train.info["step"] == 6
    assert transformers.HubertModel.from_pretrained(run.serving.model.url).config.num_hidden_layers > 0
