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
                        ["unknown section 'trian'", "clustering, data, lid, model, train"]),
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
    rc, err = _run(capsys, str(tmp_path / "short"), root)
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    m = re.match(r"mhubert pipeline: error: (prepare|iter1 cluster) failed: mhubert (corpus manifest|cluster "
                 r"sample): .*(no utterance|no usable|too short|rejected)", last)
    assert m, err
    log = last.rsplit("full log: ", 1)[1].rstrip(")")
    assert os.path.exists(log) and "Traceback" in open(log).read()  # the full story is in the log
    assert "Traceback" not in err
