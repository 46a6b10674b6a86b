"""The espeak-ng corpus and manifests: layout, determinism, format, rejects, S3."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mhubert import storage
from mhubert.artifacts import Corpus
from mhubert.cli import main
from mhubert.corpus.manifest import Manifest, ManifestEntry, build_manifest, read_rejects
from mhubert.corpus.report import read_utterances
from mhubert.corpus.synth import synthesize
from mhubert.errors import BadInput


def _wav(seconds: float, sr: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(int(seconds * 1000) + sr)
    x = (0.1 * rng.standard_normal((int(round(seconds * sr)), channels))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype="PCM_16" if fmt in ("WAV", "FLAC") else None)
    return buf.getvalue()


# -- the synthetic corpus -------------------------------------------------------------------------

def test_synth_corpus_layout_languages_datasets(synth_corpus):
    root = Path(synth_corpus["root"])
    files = sorted(root.glob("*/*/*.wav"))
    langs = {f.parent.name for f in files}
    datasets = {f.parent.parent.name for f in files}
    assert len(langs) >= 8 and len(datasets) >= 2
    m = Manifest.read(synth_corpus["manifest"])
    assert len(m) == len(files)  # nothing rejected: all within 2-30 s
    for f in files[:: max(1, len(files) // 10)]:
        i = sf.info(str(f))
        assert (i.samplerate, i.channels) == (16000, 1)
        assert 2.0 <= i.duration <= 4.0 + 1e-9
    counts = Counter(m.keys)
    assert len(set(counts.values())) > 2, f"amounts should be uneven: {counts}"
    assert (root / "_SUCCESS").exists() and (root / "transcripts.tsv").exists()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.wav"))}


def test_synth_is_deterministic_for_a_seed(tmp_path):
    kw = dict(languages=["fi", "sw"], utterances=2, min_seconds=2.0, max_seconds=3.0, workers=2)
    synthesize(str(tmp_path / "a"), seed=5, **kw)
    synthesize(str(tmp_path / "b"), seed=5, **kw)
    synthesize(str(tmp_path / "c"), seed=6, **kw)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a and a == b
    assert a != c


def test_synth_rejects_unknown_language(tmp_path):
    assert main(["corpus", "synth", "--out", str(tmp_path / "x"), "--languages", "klingon"]) == 2


# -- manifests ----------------------------------------------------------------------------------

def test_manifest_text_round_trip(tmp_path):
    m = Manifest("s3://bucket/corpus", [ManifestEntry("studio/en/a.wav", 32000, "en", "studio"),
                                         ManifestEntry("field/sw/b.flac", 48123, "sw", "field")])
    url = str(tmp_path / "m.tsv")
    m.write(url)
    lines = Path(url).read_text().splitlines()
    assert lines == ["s3://bucket/corpus", "studio/en/a.wav\t32000\ten\tstudio",
                     "field/sw/b.flac\t48123\tsw\tfield"]
    back = Manifest.read(url)
    assert back == m
    assert back.url_of(1) == "s3://bucket/corpus/field/sw/b.flac"
    assert back.languages == ["en", "sw"]
    assert back.counts() == {("en", "studio"): 1.0, ("sw", "field"): 1.0}
    assert back.counts("hours")[("sw", "field")] == pytest.approx(48123 / 16000 / 3600)
    assert back.select([1, 1]).entries == [m.entries[1]] * 2


def test_fairseq_two_column_manifest_takes_lang_and_dataset_from_path(tmp_path):
    url = str(tmp_path / "train.tsv")
    Path(url).write_text("/data/audio\nvp/de/x.wav\t40000\ncv/pt/y/z.wav\t50000\n")
    m = Manifest.read(url)
    assert [(e.lang, e.dataset) for e in m] == [("de", "vp"), ("y", "pt")]
    Path(url).write_text("/data/audio\nx.wav\t40000\n")
    with pytest.raises(BadInput, match="cannot infer lang/dataset"):
        Manifest.read(url)
    Path(url).write_text("/data\na.wav\tmany\ten\tds\n")
    with pytest.raises(BadInput, match="not an integer"):
        Manifest.read(url)


def _bad_corpus(root: str) -> dict[str, str]:
    """Good and bad files under ``root``; returns {relative path: expected reject reason}."""
    ok = _wav(2.5)
    truncated = _wav(3.0)[:20000]
    storage.atomic_write(storage.join(root, "ds1/en/good.wav"), ok)
    storage.atomic_write(storage.join(root, "ds1/en/good44.flac"), _wav(2.5, 44100, 2, "FLAC"))
    storage.atomic_write(storage.join(root, "ds2/fi/good.ogg"), _wav(3.0, 22050, 1, "OGG"))
    bad = {
        "ds1/en/empty.wav": (b"", "empty"),
        "ds1/en/text.wav": (b"I am a text file, not audio.\n" * 10, "undecodable"),
        "ds1/en/short.wav": (_wav(1.0), "too short"),
        "ds2/fi/long.wav": (_wav(31.0, 8000), "too long"),
        "ds2/fi/trunc.wav": (truncated, "truncated"),
    }
    for rel, (data, _) in bad.items():
        storage.atomic_write(storage.join(root, rel), data)
    storage.atomic_write(storage.join(root, "ds1/en/notes.txt"), b"not audio")
    storage.atomic_write(storage.join(root, "ds1/stray.wav"), ok)
    storage.atomic_write(storage.join(root, "README.txt"), b"root-level files are not data")
    reasons = {rel: reason for rel, (_, reason) in bad.items()}
    return reasons | {"ds1/en/notes.txt": "unsupported extension",
                      "ds1/stray.wav": "not laid out as <dataset>/<lang>/<file>"}


def test_manifest_build_rejects_and_outputs(storage_root):
    root, out = storage.join(storage_root, "corpus"), storage.join(storage_root, "manifest")
    expected = _bad_corpus(root)
    res = build_manifest(out, root=root, progress=False)
    m = Manifest.read(storage.join(out, "manifest.tsv"))
    assert m.root == root
    assert sorted(e.path for e in m) == ["ds1/en/good.wav", "ds1/en/good44.flac", "ds2/fi/good.ogg"]
    by_path = {e.path: e for e in m}
    assert by_path["ds1/en/good.wav"].n_samples == 40000
    assert by_path["ds1/en/good44.flac"].n_samples == round(round(2.5 * 44100) * 16000 / 44100)
    assert by_path["ds2/fi/good.ogg"].n_samples == round(round(3.0 * 22050) * 16000 / 22050)
    assert (by_path["ds2/fi/good.ogg"].lang, by_path["ds2/fi/good.ogg"].dataset) == ("fi", "ds2")
    rejects = dict(read_rejects(storage.join(out, "rejects.tsv")))
    assert set(rejects) == set(expected)
    for rel, reason in expected.items():
        assert reason in rejects[rel], (rel, rejects[rel])
    assert len(res.rejects) == len(expected)
    stats = storage.read_json(storage.join(out, "stats.json"))
    assert stats["total"]["utterances"] == 3 and stats["languages"]["en"]["utterances"] == 2
    assert stats["datasets"]["ds2"]["hours"] == pytest.approx(48000 / 16000 / 3600)
    assert stats["rejected"] == len(expected)
    assert storage.read_bytes(storage.join(out, "hours_per_language.png"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert storage.is_committed(out)


def test_manifest_from_tsv_re_measures(tmp_path):
    root = str(tmp_path / "c")
    storage.atomic_write(root + "/vp/de/a.wav", _wav(2.2, 8000))
    storage.atomic_write(root + "/vp/de/b.wav", _wav(0.5))
    (tmp_path / "in.tsv").write_text(f"{root}\nvp/de/a.wav\t1\nvp/de/b.wav\t99999\n")
    assert main(["corpus", "manifest", "--tsv", str(tmp_path / "in.tsv"), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 0
    m = Manifest.read(str(tmp_path / "o"))
    assert [(e.path, e.n_samples, e.lang, e.dataset) for e in m] == [("vp/de/a.wav", 35200, "de", "vp")]
    assert "too short" in dict(read_rejects(str(tmp_path / "o/rejects.tsv")))["vp/de/b.wav"]


def test_manifest_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["corpus", "manifest", "--root", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["corpus", "manifest", "--root", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "no audio files" in capsys.readouterr().err
    assert main(["corpus", "manifest", "--root", str(tmp_path / "empty"), "--out", str(tmp_path),
                 "--min-seconds", "5", "--max-seconds", "1"]) == 2


def test_synth_and_manifest_on_s3(s3_bucket):
    root = s3_bucket + "/corpus"
    synthesize(root, languages=["it", "tr"], utterances=1, max_seconds=2.5, workers=2)
    assert main(["corpus", "manifest", "--root", root, "--out", s3_bucket + "/m", "--quiet"]) == 0
    m = Manifest.read(s3_bucket + "/m/manifest.tsv")
    assert m.root == root and set(m.languages) == {"it", "tr"} and set(m.datasets) == {"studio", "field"}
    assert len(m) == len(storage.read_text(root + "/transcripts.tsv").splitlines()) - 1
    assert Corpus(s3_bucket + "/m").info["utterances"] == len(m)
    side = read_utterances(s3_bucket + "/m/utterances.tsv")
    lines = storage.read_text(root + "/transcripts.tsv").splitlines()[1:]
    spoken = {r.split("\t")[0]: r.split("\t") for r in lines}
    assert [u["path"] for u in side] == [e.path for e in m]
    for u in side:  # speaker = the espeak-ng voice, text = the sentence spoken
        assert (u["speaker"], u["source_lang"], u["text"]) == (spoken[u["path"]][3], spoken[u["path"]][1],
                                                               spoken[u["path"]][6])


def test_columnar_manifest_matches_the_plain_parser_and_selects(tmp_path):
    rows = [("studio/en/ä b.wav", 32000, "en", "studio"), ("field/fi/x.wav", 48000, "fi", "field"),
            ("studio/fi/y.wav", 16000, "fi", "studio"), ("studio/en/z.wav", 64000, "en", "studio")]
    text = "s3://b/c\n" + "".join(f"{p}\t{n}\t{la}\t{d}\n" for p, n, la, d in rows)
    fast = Manifest.from_text(text)
    plain = Manifest._parse_plain("s3://b/c", text.split("\n", 1)[1], "t")
    assert fast == plain and [tuple(vars(e).values()) for e in fast] == rows
    assert fast.to_text() == text
    gid, keys = fast.group_ids()
    assert [keys[g] for g in gid] == [(la, d) for _, _, la, d in rows] == fast.keys
    assert fast.counts() == {("en", "studio"): 2, ("fi", "field"): 1, ("fi", "studio"): 1}
    sel = fast.select([3, 0, 3, -1])
    assert [e.path for e in sel] == ["studio/en/z.wav", "studio/en/ä b.wav", "studio/en/z.wav",
                                     "studio/en/z.wav"]
    assert sel.languages == ["en"] and sel.datasets == ["studio"] and sel.n_samples.tolist()[1] == 32000
    assert fast[-1].path == "studio/en/z.wav" and len(fast.entries) == 4
    with pytest.raises(IndexError):
        fast[4]
    empty_root = Manifest.from_text("\ns3://x/a.wav\t5\ten\td\n")
    assert empty_root.root == "" and empty_root.url_of(0) == "s3://x/a.wav"
    url = str(tmp_path / "m.tsv")
    empty_root.write(url)
    assert Manifest.read(url) == empty_root and Path(url).read_text().startswith("\n")


def test_sampler_on_group_ids_draws_as_on_keys():
    from mhubert.data.sampling import TwoLevelSampler, budgeted_sample

    rng = np.random.default_rng(0)
    langs = rng.choice(["sv", "fi", "en"], size=500, p=[0.2, 0.1, 0.7]).tolist()
    dsets = rng.choice(["a", "b"], size=500).tolist()
    m = Manifest.from_columns("r", [f"{i}.wav" for i in range(500)], rng.integers(1, 9, 500) * 16000,
                              langs, dsets)
    by_keys = TwoLevelSampler(m.keys, seed=4)
    by_ids = TwoLevelSampler(m.group_ids(), seed=4)
    assert by_keys.probabilities == by_ids.probabilities
    assert np.array_equal(by_keys.epoch(2), by_ids.epoch(2))
    dur = (m.n_samples / 16000).tolist()
    assert np.array_equal(budgeted_sample(m.keys, dur, 600, seed=1),
                          budgeted_sample(m.group_ids(), dur, 600, seed=1))
