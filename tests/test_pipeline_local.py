"""The pipeline through kfp.local's SubprocessRunner: one component on its own (a corpus tree as
``corpus_uri``), and what `mhubert pipeline run --local` refuses. The whole 1-iteration tiny run is
tests/test_pipeline_s3.py (over S3, from a release layout)."""

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
