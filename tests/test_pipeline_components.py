"""Helpers the components share: library commands run in-process and fail with one clear line;
metrics keep numbers only."""

from __future__ import annotations

import sys

import pytest

from components._common import StageBadInput, StageFailed, log_metrics, mhubert


def test_cli_failure_names_command_and_reason(tmp_path):
    with pytest.raises(StageBadInput, match=r"^mhubert corpus manifest: corpus root not found .*missing$"):
        mhubert("corpus", "manifest", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    # a usage error is one line too, not a SystemExit out of the component
    with pytest.raises(StageFailed, match=r"bad arguments for `mhubert corpus manifest`"):
        mhubert("corpus", "manifest", "--nope")


def test_commands_run_in_this_process(tmp_path, synth_corpus, monkeypatch):
    """No second interpreter per stage: subprocess creation is forbidden while a stage runs."""
    import subprocess

    def no_subprocess(*a, **k):
        raise AssertionError("a component command started a subprocess")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    assert mhubert("corpus", "manifest", "--root", synth_corpus["root"], "--out", str(tmp_path / "c"),
                   "--quiet", "--workers", "1") == 0
    assert (tmp_path / "c" / "manifest.tsv").exists()
    assert "mhubert.cli" in sys.modules


def test_log_metrics_numbers_only(tmp_path):
    import json

    class M:
        def __init__(self):
            self.metadata = {}
            self.path = str(tmp_path / "a" / "metrics")

        def log_metric(self, k, v):
            self.metadata[k] = v

    m = M()
    log_metrics(m, {"a": 1, "b": 2.5, "c": "x", "d": None, "e": True, "f": [1]})
    assert m.metadata == {"a": 1.0, "b": 2.5, "e": 1.0}
    # the file lets kfp.local's cache find the artifact
    assert json.loads(open(m.path).read()) == m.metadata


def test_torchrun_failure_is_the_trainers_own_line(tmp_path):
    """A training that rejects its input under torchrun: the trainer's one-line error and a bad-input
    failure, not torchrun's ChildFailedError and its exit 1."""
    from components._common import torchrun

    args = ["--preset", "tiny", "--manifest", str(tmp_path / "missing.tsv"), "--labels", str(tmp_path / "l"),
            "--out", str(tmp_path / "train")]
    with pytest.raises(StageBadInput) as e:
        torchrun(args, nproc=1, what="iter1 train")
    msg = str(e.value)
    assert msg.startswith("iter1 train: ") and str(tmp_path) in msg and "\n" not in msg, msg
    assert "ChildFailedError" not in msg and "Traceback" not in msg
