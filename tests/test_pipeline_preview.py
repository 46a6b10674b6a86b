"""Issue 15 scope 7: `mhubert pipeline run` prints the cost preview first for every corpus, also a
folder or ``--format/--src`` sources not imported yet (durations read from the audio headers, a
random sample of a large corpus labelled an estimate). The figures are checked against the preset
YAML and soundfile's reading of the files, not through the plan's code: updates x batch = audio seen,
labels bytes = frames x 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mhubert.cli import main

PRESETS = Path(__file__).resolve().parents[1] / "mhubert" / "presets"


def _write(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(rate * seconds)).astype(np.float32)
    sf.write(str(path), x, rate)


def _frames_16k(path: str) -> int:
    """The file's length at 16 kHz as soundfile reads it (the reference the preview must agree with)."""
    i = sf.info(path)
    return int(round(i.frames * 16000 / i.samplerate))


def _audio_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.suffix in (".wav", ".flac", ".mp3"))


def _dry_run(capsys, *args) -> tuple[int, list[str], str]:
    rc = main(["pipeline", "run", "--local", "--preset", "tiny", "--iterations", "1", "--dry-run", *args])
    cap = capsys.readouterr()
    return rc, cap.out.strip().splitlines(), cap.err


def _expected_line(tiny: dict, lengths: list[int], updates: int, gpus: int, k: int) -> str:
    """The iteration-1 figures from the YAML and the file lengths: audio seen, labels."""
    batch = tiny["data"]["max_tokens"] * gpus * tiny["train"]["update_freq"]
    hop = 16000 // tiny["iterations"][0]["label_rate"]
    frames = sum(n // hop for n in lengths)
    seen_min = updates * batch / 16000 / 60
    return (f"iteration 1 (mfcc, 100 Hz labels, K={k}): {updates:,} updates x {batch / 16000:,.0f} s of "
            f"audio = <= {seen_min:,.1f} min seen",
            f"labels {frames * 2 / 1000:,.1f} kB ({frames:,} frames x 2 B)")


@pytest.fixture(scope="module")
def tiny() -> dict:
    return yaml.safe_load((PRESETS / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """<dataset>/<lang>/ in three formats and two rates, plus a file too short and one too long for
    the prepare stage's 2-30 s."""
    root = tmp_path_factory.mktemp("preview") / "corpus"
    _write(root / "ds1" / "en" / "a.wav", 3.0, seed=1)
    _write(root / "ds1" / "en" / "b.flac", 2.5, rate=8000, seed=2)
    _write(root / "ds1" / "fr" / "c.mp3", 4.0, seed=3)
    _write(root / "ds2" / "fr" / "d.wav", 5.25, seed=4)
    _write(root / "ds2" / "sw" / "short.wav", 1.0, seed=5)
    _write(root / "ds2" / "sw" / "long.flac", 31.0, seed=6)
    return root


def test_folder_preview_comes_first_and_matches_the_config(folder, tiny, tmp_path, capsys):
    root = tmp_path / "run"
    rc, out, err = _dry_run(capsys, "--corpus", str(folder), "--root", str(root), "--gpus-per-node", "2",
                            "--set", "train.max_update=50", "--cluster-set", "num_clusters=20")
    assert rc == 0, err
    lengths = [n for n in map(_frames_16k, _audio_files(folder)) if 32000 <= n <= 480000]
    assert len(lengths) == 4  # the 1 s and 31 s files are left out, as the import will
    minutes = sum(lengths) / 16000 / 60
    assert out[0] == (f"corpus: 4 utterances, {minutes:.1f} min, 2 languages (all 6 audio files, 2-30 s "
                      "kept as prepare will); 1 node(s) x 2 GPU(s)"), out
    seen, labels = _expected_line(tiny, lengths, 50, 2, 20)
    assert out[2].startswith(seen) and labels in out[2], out[2]
    assert out[-1].startswith("checked: ") and len(out) == 4  # the preview, then the check's line
    assert not root.exists()


def test_shallow_layout_with_dataset_is_measured(tmp_path, tiny, capsys):
    """--dataset NAME: the file list the preflight writes has no lengths; the preview reads them."""
    corpus = tmp_path / "shallow"
    for i, lang in enumerate(("en", "fr", "fr")):
        _write(corpus / lang / f"{i}.flac", 2.0 + i, seed=i)
    rc, out, err = _dry_run(capsys, "--corpus", str(corpus), "--dataset", "mine",
                            "--root", str(tmp_path / "r"))
    assert rc == 0, err
    lengths = [_frames_16k(f) for f in _audio_files(corpus)]
    minutes = sum(lengths) / 16000 / 60
    assert out[0].startswith(f"corpus: 3 utterances, {minutes:.1f} min, 2 languages (all 3 "), out
    assert _expected_line(tiny, lengths, tiny["train"]["max_update"], 1, 100)[1] in out[2], out[2]


def test_a_large_folder_is_estimated_from_a_sample(tmp_path, tiny, capsys, monkeypatch):
    from pipelines import preview

    corpus = tmp_path / "big"
    for i in range(12):
        _write(corpus / "ds" / ("en", "fr", "sw")[i % 3] / f"{i}.wav", 3.0, seed=i)
    monkeypatch.setattr(preview, "PREVIEW_FILES", 4)
    lengths, scale, info = preview.corpus_lengths("dir", [str(corpus)], (2.0, 30.0))
    assert len(lengths) == 4 and scale == 3.0 and info["estimate"]["files"] == 12
    rc, out, err = _dry_run(capsys, "--corpus", str(corpus), "--root", str(tmp_path / "r"))
    assert rc == 0, err
    # every file is 3 s long: the estimate scaled from 4 of them is the whole corpus's figure
    assert out[0].startswith("corpus: ~12 utterances, 0.6 min, 3 languages (an estimate from a random "
                             "sample of 4 of 12 audio files, 2-30 s kept as prepare will)"), out[0]
    whole = [_frames_16k(f) for f in _audio_files(corpus)]
    assert _expected_line(tiny, whole, tiny["train"]["max_update"], 1, 100)[1] in out[2], out[2]


def test_release_sources_are_previewed_by_the_import_rules(tmp_path, capsys):
    """--format fleurs --src: the release's rows (its reader already drops the row whose clip is
    missing, as the import does), durations by the headers;
    and the hf format, which writes its audio while it is read, says it has no preview yet."""
    from helpers.releases import FLEURS_DIRS, write_fleurs

    plain = tmp_path / "plain"
    for i, lang in enumerate(FLEURS_DIRS):
        _write(plain / "field" / lang / f"{i}.wav", 2.0 + 0.5 * i, seed=i)
    kept = write_fleurs(str(plain), "field", str(tmp_path / "fleurs"))
    rc, out, err = _dry_run(capsys, "--format", "fleurs", "--src", str(tmp_path / "fleurs"),
                            "--root", str(tmp_path / "r"))
    assert rc == 0, err
    minutes = sum(n for _, n in kept.values()) / 16000 / 60
    assert out[0].startswith(f"corpus: 8 utterances, {minutes:.1f} min, 8 languages (all 8 audio files"), out
    rc, out, err = _dry_run(capsys, "--format", "hf", "--src", str(plain), "--root", str(tmp_path / "r2"))
    assert rc == 0, err
    assert out[0].startswith("cost preview: the hf format is measured by the import itself"), out


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the --yes rule is for machines without a GPU")
def test_base_without_a_gpu_shows_the_preview_then_asks_for_yes(folder, tmp_path, capsys):
    root = tmp_path / "run"
    rc = main(["pipeline", "run", "--local", "--corpus", str(folder), "--root", str(root), "--preset", "base",
               "--iterations", "1"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out.startswith("corpus: 4 utterances"), cap
    assert "unknown device time" in cap.out  # no GPU kind here: no rate is made up
    (line,) = cap.err.strip().splitlines()
    assert "pass --yes" in line and "--preset tiny" in line
    assert not root.exists()

