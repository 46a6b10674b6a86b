"""Issue 15's "Why" cases for `mhubert pipeline run`: each mistake is one line naming the problem
(exit code 2, no traceback) before any stage starts (nothing is written under --root, no kfp run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mhubert.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _wav(path: Path, seconds: float, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32)
    sf.write(str(path), x, 16000, subtype="PCM_16")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A proper <dataset>/<lang>/ corpus and a one-level-shallow <lang>/ one (3 s of noise each)."""
    base = tmp_path_factory.mktemp("preflight")
    for lang in ("en", "fr"):
        for i in range(2):
            _wav(base / "good" / "ds1" / lang / f"{i}.wav", 3.0, i)
            _wav(base / "shallow" / lang / f"{i}.flac", 3.0, i)
    return {"good": str(base / "good"), "shallow": str(base / "shallow")}


def _run(capsys, corpus, root, *extra):
    rc = main(["pipeline", "run", "--local", "--corpus", corpus, "--root", str(root), "--preset", "tiny",
               "--iterations", "1", *extra])
    err = capsys.readouterr().err
    return rc, err


CASES = {
    # typo'd key of the trainer (was reported after 72 s of clustering, inside torchrun)
    "train key typo": (["--train-set", "train.max_updates=50"],
                       ["train has no option 'max_updates'", "max_update"]),
    # typo'd key of the clustering (was a traceback after 10 s)
    "cluster key typo": (["--cluster-set", "nmu_clusters=50"], ["'nmu_clusters'", "clustering"]),
    # a value the trainer refuses (was reported after 63 s)
    "negative updates": (["--set", "train.max_update=-5"], ["max_update"]),
    # a value of the wrong type (was a TypeError traceback)
    "wrong type": (["--set", "train.max_update=abc"], ["max_update must be a number, got 'abc'"]),
    "unknown section": (["--set", "trian.lr=1"],
                        ["unknown section 'trian'", "clustering, data, lid, model, superb, train"]),
    # iterations after 1 need a starting model (was a ValueError naming model_uri)
    "no init model": (["--iterations", "2"], ["--init-model", "iteration 2"]),
    "missing init model": (["--iterations", "2", "--init-model", "/nonexistent/model"],
                           ["--init-model /nonexistent/model: not found"]),
    # a preset typo names the valid ones (was "not found: tinny")
    "preset typo": (["--preset", "tinny"], ["unknown preset 'tinny'", "base | tiny"]),
    "bad shards": (["--shards", "0"], ["--shards must be >= 1"]),
    "resume and force": (["--resume", "--force"], ["exclude each other"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistakes_fail_before_any_stage(case, corpora, tmp_path, capsys):
    extra, expected = CASES[case]
    root = tmp_path / "run"
    rc, err = _run(capsys, corpora["good"], root, *extra)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mhubert pipeline: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not root.exists(), "a stage started (the run root was written)"


def test_shallow_layout_is_recognised_and_named(corpora, tmp_path, capsys):
    rc, err = _run(capsys, corpora["shallow"], tmp_path / "run")
    assert rc == 2
    line = err.strip()
    assert "4 audio files in <lang>/<file> folders (en, fr)" in line and "one level too shallow" in line
    assert "--dataset NAME" in line and "\n" not in line
    assert not (tmp_path / "run").exists()


def test_dataset_flag_accepts_the_shallow_layout(corpora, tmp_path, capsys):
    """--dataset NAME: the <lang>/ folders become languages of one dataset NAME, and the scan stage
    reads them (its manifest measures every file)."""
    from mhubert.artifacts import Corpus

    root = tmp_path / "run"
    rc = main(["pipeline", "run", "--local", "--corpus", corpora["shallow"], "--dataset", "mine",
               "--root", str(root), "--preset", "tiny", "--iterations", "1", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "nothing was run" in out
    tsv = root / "_input" / "mine.tsv"
    assert f"corpus {tsv}" in out
    assert main(["corpus", "manifest", "--tsv", str(tsv), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    m = Corpus(str(tmp_path / "c")).read_manifest()
    assert sorted((e.lang, e.dataset) for e in m.entries) == [("en", "mine")] * 2 + [("fr", "mine")] * 2
    assert all(e.n_samples == 48000 for e in m.entries)
    # and --dataset on a layout that already has datasets is refused
    assert main(["pipeline", "run", "--local", "--corpus", corpora["good"], "--dataset", "x",
                 "--root", str(tmp_path / "r2"), "--dry-run"]) == 2
    assert "drop --dataset" in capsys.readouterr().err


def test_dry_run_accepts_good_settings_and_routes_them(corpora, tmp_path, capsys):
    rc = main(["pipeline", "run", "--local", "--corpus", corpora["good"], "--root", str(tmp_path / "r"),
               "--preset", "tiny", "--iterations", "1", "--dry-run", "--set", "train.max_update=50",
               "--train-set", "lr=0.001", "--cluster-set", "mode=exact", "--set", "lid.epochs=10"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "train.max_update=50 train.lr=0.001 mode=exact epochs=10" in out


def test_unknown_flag_shows_the_subcommand_usage_in_a_real_process(corpora, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "mhubert", "pipeline", "run", "--local", "--corpus",
                        corpora["good"], "--root", str(tmp_path / "r"), "--train-sett", "x=1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: mhubert pipeline run"), r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("mhubert pipeline run: error: unrecognized arguments: "
                                                 "--train-sett x=1")
    assert "Traceback" not in r.stderr


def test_a_failing_stage_ends_with_its_one_line_cause(tmp_path, capsys):
    """A corpus that passes the layout check but whose files are all too short: the scan keeps none
    and the first stage that needs utterances fails; the run ends with that stage's one-line cause as
    the last line, the log's path, and exit code 2 (bad input), with no traceback on the terminal."""
    import re

    for lang in ("en", "fr"):
        _wav(tmp_path / "short" / "ds" / lang / "0.wav", 0.5)
    root = tmp_path / "run"
    rc = main(["pipeline", "run", "--local", "--corpus", str(tmp_path / "short"), "--root", str(root),
               "--preset", "tiny", "--iterations", "1"])
    cap = capsys.readouterr()
    err = cap.err
    assert rc == 2, err
    # the cost preview came first (scope 7), before kfp.local started: here it says what prepare will do
    out = cap.out.splitlines()
    assert out[0] == ("cost preview: none of the 2 audio files measured is within 2-30 s: the prepare stage "
                      "will keep none") and out[1].startswith("running 1 iteration(s) with kfp.local"), out
    last = err.strip().splitlines()[-1]
    m = re.match(r"mhubert pipeline: error: (prepare|iter1 cluster) failed: mhubert (corpus manifest|cluster "
                 r"sample): .*(no utterance|no usable|too short|rejected)", last)
    assert m, err
    log = last.rsplit("full log: ", 1)[1].rstrip(")")
    assert os.path.exists(log) and "Traceback" in open(log).read()  # the full story is in the log
    assert "Traceback" not in err


# -- the no-stale-results rule, before any stage starts -------------------------------------------
# A root as a 1-iteration tiny run leaves it, made by the same library commands, with the same
# arguments, that the components run (components/prepare.py, cluster.py, assign.py, train.py,
# evaluate.py), on six 2.5 s noise files: seconds, not the minutes of a kfp.local run.
STALE_RUN = ["--preset", "tiny", "--iterations", "1", "--shards", "2", "--set", "train.max_update=2",
             "--set", "train.log_interval=1", "--cluster-set", "mode=exact",
             "--cluster-set", "num_clusters=8"]


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    from mhubert.artifacts import RunLayout
    from mhubert.config import iteration_schedule, iteration_train_overrides
    from mhubert.train.__main__ import main as train_main

    base = tmp_path_factory.mktemp("stale")
    corpus, root = base / "corpus", str(base / "run")
    for lang in ("en", "fr"):
        for i in range(3):
            _wav(corpus / "ds1" / lang / f"{i}.wav", 2.5, i + (10 if lang == "fr" else 0))
    run = RunLayout(root)
    it = run.iteration(1)
    assert main(["corpus", "manifest", "--root", str(corpus), "--out", run.corpus.url, "--min-seconds", "2.0",
                 "--max-seconds", "30.0", "--quiet"]) == 0
    manifest = run.corpus.manifest_url
    sets = ["--set", "mode=exact", "--set", "num_clusters=8"]
    k = ["--num-clusters", str(iteration_schedule("tiny")[0]["num_clusters"])]  # the --set above wins
    feat = ["--features", "mfcc", "--layer", "0"]
    assert main(["cluster", "sample", "--manifest", manifest, "--out", it.clustering.url, "--preset", "tiny",
                 *k, "--quiet", *feat, *sets]) == 0
    assert main(["cluster", "fit", "--out", it.clustering.url, "--preset", "tiny", *k, "--quiet", *sets]) == 0
    for shard in (0, 1):
        assert main(["cluster", "assign", "--manifest", manifest, "--index", it.clustering.index.index_url,
                     "--labels", it.labels.url, *feat, "--shard", str(shard), "--num-shards", "2",
                     "--preset", "tiny", "--quiet", *sets]) == 0
    assert main(["cluster", "merge", "--labels", it.labels.url, "--num-shards", "2", "--quiet"]) == 0
    train = ["--preset", "tiny", "--manifest", manifest, "--labels", it.labels.url, "--out", it.train.url]
    for o in iteration_train_overrides("tiny", 1, ["train.max_update=2", "train.log_interval=1"]):
        train += ["--set", o]
    assert train_main(train) == 0
    assert main(["lid", "train", "--model", it.train.model.url, "--manifest", manifest, "--out",
                 it.eval.lid.url, "--preset", "tiny", "--quiet"]) == 0
    for art in (run.corpus, it.clustering.sample, it.clustering.index, it.labels, it.train, it.eval.lid):
        assert art.is_committed(), art
    return {"corpus": str(corpus), "root": root}


def _stale_run(capsys, trained_root, *extra, corpus=None):
    rc = main(["pipeline", "run", "--local", "--corpus", corpus or trained_root["corpus"],
               "--root", trained_root["root"], *STALE_RUN, *extra])
    return rc, capsys.readouterr()


def test_same_settings_pass_the_stale_check(trained_root, capsys):
    """The check builds the fingerprints the stages committed (else it would stop a run they reuse)."""
    rc, out = _stale_run(capsys, trained_root, "--dry-run")
    assert rc == 0 and "nothing was run" in out.out, out.err


@pytest.mark.parametrize("extra, stage, expected, resumable", [
    # the reported bug: more updates on a root trained for fewer ran every stage before training
    (["--set", "train.max_update=3"], "iter1/train", "recipe.train.max_update: 2 -> 3", True),
    (["--cluster-set", "seed=5"], "iter1/clustering/sample", "clustering.seed: ", False),
    (["--set", "lid.epochs=7"], "iter1/eval/lid", "lid.epochs: ", False),
    # the labelling method reaches `cluster assign` (components/assign.py), so it is the labels' setting
    (["--cluster-set", "label_method=exact"], "iter1/labels", 'clustering.label_method: "auto" -> "exact"',
     False),
])
def test_other_settings_stop_before_any_stage(trained_root, capsys, extra, stage, expected, resumable):
    from mhubert.artifacts import RunLayout

    run = RunLayout(trained_root["root"])
    markers = {a.url: open(a.marker_url).read() for a in (run.corpus, run.iteration(1).train)}
    rc, out = _stale_run(capsys, trained_root, *extra)
    assert rc == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mhubert pipeline: error: "), out.err
    line = lines[0]
    assert f"{trained_root['root']}/{stage} was produced with other settings" in line, line
    assert expected in line and "--force" in line and ("--resume" in line) == resumable, line
    assert "Traceback" not in out.err + out.out
    # no stage started: no kfp.local run (its pipeline root and log), every result as it was
    assert not os.path.exists(os.path.join(trained_root["root"], "_kfp")), os.listdir(trained_root["root"])
    assert "kfp.local" not in out.out
    assert {a.url: open(a.marker_url).read() for a in (run.corpus, run.iteration(1).train)} == markers


def test_another_corpus_stops_at_the_corpus(trained_root, tmp_path, capsys):
    import shutil

    other = tmp_path / "corpus2"
    shutil.copytree(trained_root["corpus"], other)
    rc, out = _stale_run(capsys, trained_root, corpus=str(other))
    assert rc == 2
    line = out.err.strip()
    assert f"{trained_root['root']}/corpus was produced with other settings (sources: [" in line, line
    assert "\n" not in line and "--force" in line
    assert not os.path.exists(os.path.join(trained_root["root"], "_kfp"))


@pytest.mark.parametrize("choice", ["--resume", "--force"])
def test_resume_and_force_pass_the_stale_check(trained_root, capsys, choice):
    rc, out = _stale_run(capsys, trained_root, "--set", "train.max_update=3", choice, "--dry-run")
    assert rc == 0, out.err
