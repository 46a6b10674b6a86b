"""The console command: every subcommand has --help, and bad input is one clear line, never a traceback."""

import argparse
import subprocess
import sys

import pytest

from mhubert.cli import build_parser, main


def _leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
        return
    for name, p in subs[0].choices.items():
        yield from _leaf_commands(p, prefix + (name,))


LEAVES = [c for c in _leaf_commands(build_parser()) if c]


def test_expected_stages_are_present():
    tops = {c[0] for c in LEAVES}
    for stage in ("corpus", "cluster", "train", "lid", "model", "job"):
        assert stage in tops, f"`mhubert {stage}` is missing; have {sorted(tops)}"
    for shell in ("pipeline", "serve", "demo", "plan"):  # registered by the shells (entry points)
        assert shell in tops, (f"`mhubert {shell}` is missing (have {sorted(tops)}): the shells register it "
                               "through pyproject's mhubert.commands entry points; reinstall with "
                               "`pip install --no-deps --no-build-isolation -e .`")
    assert ("train", "render-job") in LEAVES


@pytest.mark.parametrize("cmd", LEAVES, ids=[" ".join(c) for c in LEAVES])
def test_help_works(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_missing_input_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mhubert", "corpus", "manifest",
                        "--root", str(tmp_path / "does-not-exist"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "error" in r.stderr.lower()


def test_an_audio_file_given_as_a_manifest_is_one_line(tmp_path, capsys):
    """Issue 15: `corpus manifest --tsv` on a wav file was a UnicodeDecodeError traceback."""
    import numpy as np
    import soundfile as sf

    wav, tsv = tmp_path / "a.wav", tmp_path / "a.tsv"
    sf.write(str(wav), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    tsv.write_bytes(wav.read_bytes())  # the name of a manifest, an audio file's bytes
    runs = {"corpus": ["corpus", "manifest", "--tsv", str(wav), "--out", str(tmp_path / "o"), "--quiet"],
            "plan": ["plan", "--manifest", str(wav)],
            "pipeline": ["pipeline", "run", "--local", "--corpus", str(tsv), "--root", str(tmp_path / "r"),
                         "--preset", "tiny", "--iterations", "1", "--dry-run"]}
    for name, argv in runs.items():
        assert main(argv) == 2, name
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"mhubert {name}: error: "), line
        assert "not a manifest TSV (not UTF-8 text" in line, line
    assert main(["pipeline", "run", "--local", "--corpus", str(wav), "--root", str(tmp_path / "r"),
                 "--preset", "tiny", "--iterations", "1", "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "a file, not a manifest TSV" in line and "<dataset>/<lang>/<file>" in line, line
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()
