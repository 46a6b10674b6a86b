"""The corpus of a pipeline run as ``mhubert corpus import`` takes it (issue 10 scope 5): ``--format``
with repeated ``--src`` through preflight, the pipeline's ``corpus_format``/``corpus_sources``, and
the ``prepare`` component importing a released layout from several sources (kfp.local)."""

from __future__ import annotations

import os

import pytest
import yaml
from helpers.releases import MISSING, write_fleurs

from mhubert import storage
from mhubert.cli import main


def _run(capsys, root, *corpus):
    rc = main(["pipeline", "run", "--local", *corpus, "--root", str(root), "--preset", "tiny",
               "--iterations", "1", "--dry-run"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def fleurs(synth_corpus, tmp_path_factory):
    """Two FLEURS releases on local disk (the espeak-ng corpus's two datasets), and what they hold."""
    base = tmp_path_factory.mktemp("fleurs")
    srcs = [str(base / d) for d in ("field", "studio")]
    kept = {}
    for d, src in zip(("field", "studio"), srcs, strict=True):
        kept.update(write_fleurs(synth_corpus["root"], d, src))
    return srcs, kept


BAD = {
    "src without format": (["--src", "{a}"], "--src needs --format"),
    "format without src": (["--corpus", "{a}", "--format", "fleurs"], "--format goes with --src"),
    "both corpus and src": (["--corpus", "{a}", "--format", "fleurs", "--src", "{a}"],
                            "--corpus URL, or as --format FORMAT with --src"),
    "neither": ([], "--corpus URL, or as --format FORMAT with --src"),
    "missing source": (["--format", "fleurs", "--src", "{a}", "--src", "{a}/nope"], "/nope: not found"),
    "dataset with src": (["--format", "fleurs", "--src", "{a}", "--dataset", "x"], "--dataset names"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_corpus_options_stop_before_any_stage(case, fleurs, tmp_path, capsys):
    args, message = BAD[case]
    root = tmp_path / "run"
    rc, _, err = _run(capsys, root, *[a.format(a=fleurs[0][0]) for a in args])
    assert rc == 2 and message in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and not root.exists()


def test_unknown_format_is_named_with_the_choices(fleurs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(capsys, tmp_path / "run", "--format", "fleur", "--src", fleurs[0][0])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "'fleur'" in err and "commonvoice" in err and "fleurs" in err, err


def test_dry_run_takes_the_sources_in_order(fleurs, tmp_path, capsys):
    a, b = fleurs[0]
    rel = os.path.relpath(b)  # a relative local path becomes absolute, as --corpus does
    rc, out, err = _run(capsys, tmp_path / "run", "--format", "fleurs", "--src", a, "--src", rel)
    assert rc == 0, err
    assert f"corpus fleurs {a} {b}," in out, out


def test_compiled_pipeline_passes_format_and_sources_to_prepare(tmp_path):
    from pipelines.mhubert_pipeline import PipelineOptions, compile_pipeline

    spec = yaml.safe_load(open(compile_pipeline(str(tmp_path / "p.yaml"),
                                                PipelineOptions(iterations=(1,), launcher="local",
                                                                preset="tiny"))))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["corpus_format"]["parameterType"] == "STRING"
    assert params["corpus_sources"]["parameterType"] == "LIST"
    prep = spec["root"]["dag"]["tasks"]["prepare"]["inputs"]["parameters"]
    assert prep["fmt"]["componentInputParameter"] == "corpus_format"
    assert prep["sources"]["componentInputParameter"] == "corpus_sources"
    assert prep["corpus_uri"]["componentInputParameter"] == "corpus_uri"


def test_prepare_imports_a_release_from_several_sources(fleurs, tmp_path):
    """Both FLEURS releases joined (full URLs, an empty root line), every row's language and the
    release's own duration, the missing clips rejected with their reason."""
    from kfp import local

    from components.prepare import prepare
    from mhubert.artifacts import Corpus
    from mhubert.corpus.report import read_rejects

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    srcs, kept = fleurs
    out = str(tmp_path / "run")
    task = prepare(corpus_uri="", output_root=out, fmt="fleurs", sources=srcs)
    assert task.outputs["Output"] == f"{out}/corpus/manifest.tsv"
    c = Corpus(f"{out}/corpus")
    m = c.read_manifest()
    assert m.root == ""
    assert {m.url_of(i): (m[i].lang, m[i].n_samples) for i in range(len(m))} == kept
    assert set(m.datasets) == {"fleurs"}
    assert dict(read_rejects(c.path("rejects.tsv"))).keys() == {
        storage.join(s, "en_us", "audio", "train", MISSING) for s in srcs}
    stats = task.outputs["stats"].metadata
    assert stats["utterances"] == len(kept) and stats["rejected"] == 2 and stats["languages"] == 8
