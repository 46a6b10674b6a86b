"""`corpus import` per format: small corpora written in each release's layout (its column names and
file naming; mp3/opus/flac/ogg/wav written by soundfile, lhotse manifests by lhotse), with broken
clips, rows whose clip is missing and unknown language codes. Each test checks rows, languages,
datasets, durations, speakers and transcripts, that every bad row is in rejects.tsv with a reason,
and that nothing else is dropped. Expected lengths come from soundfile decoding the bytes."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import soundfile as sf

from mhubert import storage
from mhubert.artifacts import Corpus, Manifest
from mhubert.cli import main
from mhubert.corpus.importer import import_corpus
from mhubert.corpus.report import read_rejects, read_utterances

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
           "opus": ("OGG", "OPUS"), "ogg": ("OGG", "VORBIS")}
BROKEN = b"RIFF\x00\x00\x00\x00not audio at all" * 4


def audio(seconds: float, ext: str = "wav", sr: int = 16000, seed: int = 0) -> bytes:
    fmt, sub = FORMATS[ext]
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    x = (0.2 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.01 * rng.standard_normal(len(t)))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format=fmt, subtype=sub)
    return buf.getvalue()


def decoded_16k(data: bytes) -> int:
    """The reference length: soundfile decodes the whole file; samples at 16 kHz."""
    x, sr = sf.read(io.BytesIO(data))
    return int(round(len(x) * 16000 / sr))


def put(root: str, rel: str, data: bytes | str) -> None:
    storage.atomic_write(storage.join(root, rel), data.encode() if isinstance(data, str) else data)


def tsv(header: list[str] | None, rows: list[list[str]]) -> str:
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def check(out: str, kept: dict[str, tuple], rejected: dict[str, str]) -> Manifest:
    """``kept``: url -> (lang, dataset, n_samples, speaker, source_lang, text);
    ``rejected``: path -> reason substring. Nothing else may be in the manifest or rejects."""
    c = Corpus(out)
    c.verify()
    m = c.read_manifest()
    got = {m.url_of(i): m[i] for i in range(len(m))}
    assert set(got) == set(kept), (sorted(got), sorted(kept))
    side = {u["path"]: u for u in read_utterances(c.utterances_url)}
    assert [u["path"] for u in read_utterances(c.utterances_url)] == [e.path for e in m]
    for url, (lang, dataset, n, speaker, source_lang, text) in kept.items():
        e = got[url]
        assert (e.lang, e.dataset, e.n_samples) == (lang, dataset, n), url
        u = side[e.path]
        assert (u["speaker"], u["source_lang"], u["text"]) == (speaker, source_lang, text), url
    rej = dict(read_rejects(c.path("rejects.tsv")))
    assert set(rej) == set(rejected), (rej, rejected)
    for p, why in rejected.items():
        assert why in rej[p], (p, rej[p])
    st = c.stats()
    assert st["total"]["utterances"] == len(kept) and st["rejected"] == len(rejected)
    return m


def test_commonvoice_both_column_sets_durations_and_default_selection(tmp_path):
    src, out = str(tmp_path / "cv-corpus-20.0"), str(tmp_path / "out")
    old = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
           "locale", "segment"]
    new = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
           "age", "gender", "accents", "variant", "locale", "segment"]
    clips = {f"common_voice_sv-SE_{i}.mp3": audio(2.0 + 0.5 * i, "mp3", seed=i) for i in (1, 2, 4, 5, 6)}
    clips["common_voice_sv-SE_3.mp3"] = BROKEN
    for name, data in clips.items():
        put(src, f"sv-SE/clips/{name}", data)

    def old_row(i: int, text: str) -> list[str]:
        return [f"spk{i}", f"common_voice_sv-SE_{i}.mp3", text, "2", "0", "", "", "", "sv-SE", ""]
    val = [old_row(i, f"mening {i} med \"citat\"") for i in (1, 2, 3, 4, 5, 6, 7)]  # 7: no clip
    put(src, "sv-SE/validated.tsv", tsv(old, val))
    put(src, "sv-SE/dev.tsv", tsv(old, [old_row(4, "x")]))
    put(src, "sv-SE/test.tsv", tsv(old, [old_row(5, "y")]))
    put(src, "sv-SE/train.tsv", tsv(old, [old_row(1, "z")]))
    n1, n6 = decoded_16k(clips["common_voice_sv-SE_1.mp3"]), decoded_16k(clips["common_voice_sv-SE_6.mp3"])
    put(src, "sv-SE/clip_durations.tsv", tsv(["clip", "duration[ms]"], [
        ["common_voice_sv-SE_1.mp3", str(n1 / 16)], ["common_voice_sv-SE_6.mp3", str(n6 / 16 * 1.05)],
        ["common_voice_sv-SE_2.mp3", str(decoded_16k(clips["common_voice_sv-SE_2.mp3"]) / 16 * 1.005)]]))
    # newer column set; zh-HK is Cantonese
    hk = audio(3.0, "mp3", seed=9)
    put(src, "zh-HK/clips/common_voice_zh-HK_1.mp3", hk)
    put(src, "zh-HK/validated.tsv", tsv(new, [["c9", "common_voice_zh-HK_1.mp3", "s1", "你好", "",
                                               "1", "0", "", "", "", "", "zh-HK", ""]]))
    # an unknown locale code
    put(src, "xx-QQ/clips/common_voice_xx_1.mp3", audio(2.5, "mp3"))
    put(src, "xx-QQ/validated.tsv", tsv(old, [["c0", "common_voice_xx_1.mp3", "t", "1", "0", "", "", "",
                                               "xx-QQ", ""]]))
    assert main(["corpus", "import", "--format", "commonvoice", "--src", src, "--out", out, "--quiet"]) == 0
    j = os.path.join
    kept = {
        j(src, "sv-SE/clips/common_voice_sv-SE_1.mp3"): ("sv", "commonvoice", n1, "spk1", "sv-SE",
                                                         'mening 1 med "citat"'),
        j(src, "sv-SE/clips/common_voice_sv-SE_2.mp3"): (
            "sv", "commonvoice", decoded_16k(clips["common_voice_sv-SE_2.mp3"]), "spk2", "sv-SE",
            'mening 2 med "citat"'),
        j(src, "sv-SE/clips/common_voice_sv-SE_6.mp3"): ("sv", "commonvoice", round(n6 * 1.05), "spk6",
                                                         "sv-SE", 'mening 6 med "citat"'),
        j(src, "zh-HK/clips/common_voice_zh-HK_1.mp3"): ("yue", "commonvoice", decoded_16k(hk), "c9",
                                                         "zh-HK", "你好"),
    }
    rejected = {"sv-SE/clips/common_voice_sv-SE_3.mp3": "undecodable",
                "sv-SE/clips/common_voice_sv-SE_7.mp3": "audio file not found",
                "xx-QQ/clips/common_voice_xx_1.mp3": "unknown language code 'xx-QQ'"}
    check(out, kept, rejected)
    st = Corpus(out).stats()
    assert st["duration_mismatch"] == 1  # clip 6's metadata is 5 % off its header
    assert st["durations_from_metadata"] == 3  # clip 2: 0.5 % off, so its exact header length is kept
    # another selection: the train TSV only
    out2 = str(tmp_path / "train")
    import_corpus("commonvoice", src, out2, splits=["train"], languages=["sv"])
    assert [e.path for e in Corpus(out2).read_manifest()] == ["sv-SE/clips/common_voice_sv-SE_1.mp3"]


def test_voxlingua107(tmp_path):
    src, out = str(tmp_path / "vl107"), str(tmp_path / "out")
    files = {"sv/abc__U__S1-1.wav": audio(2.5, sr=16000), "sv/abc__U__S2-2.wav": audio(3.0, sr=8000),
             "jw/x__U__S1-1.wav": audio(2.2), "zz/q.wav": audio(2.4)}
    for rel, data in files.items():
        put(src, rel, data)
    put(src, "sv/broken.wav", audio(3.0)[:5000])  # truncated: the header promises more
    import_corpus("voxlingua107", src, out)
    kept = {os.path.join(src, rel): (lang, "voxlingua107", decoded_16k(files[rel]), "", code, "")
            for rel, lang, code in [("sv/abc__U__S1-1.wav", "sv", "sv"), ("sv/abc__U__S2-2.wav", "sv", "sv"),
                                    ("jw/x__U__S1-1.wav", "jv", "jw")]}
    check(out, kept, {"sv/broken.wav": "truncated", "zz/q.wav": "unknown language code 'zz'"})


def test_fleurs_headerless_tsv_with_num_samples(storage_root):
    src, out = storage.join(storage_root, "fleurs"), storage.join(storage_root, "out")
    a, b = audio(2.5, seed=1), audio(3.5, seed=2)
    put(src, "sv_se/audio/train/1.wav", a)
    put(src, "cmn_hans_cn/audio/train/2.wav", b)
    put(src, "sv_se/train.tsv", tsv(None, [["10", "1.wav", "Hej Världen", "hej världen", "h e j", "40000",
                                            "FEMALE"],
                                           ["11", "9.wav", "saknas", "saknas", "s", "40000", "MALE"]]))
    put(src, "sv_se/dev.tsv", tsv(None, [["12", "7.wav", "dev", "dev", "d", "40000", "MALE"]]))
    put(src, "cmn_hans_cn/train.tsv", tsv(None, [["20", "2.wav", "你好", "你好", "n", "56000", "MALE"]]))
    import_corpus("fleurs", src, out)
    j = os.path.join
    check(out, {j(src, "sv_se/audio/train/1.wav"): ("sv", "fleurs", 40000, "", "sv_se", "Hej Världen"),
                j(src, "cmn_hans_cn/audio/train/2.wav"): ("zh", "fleurs", 56000, "", "cmn_hans_cn", "你好")},
          {"sv_se/audio/train/9.wav": "audio file not found"})


def test_mls_opus_and_flac(tmp_path):
    src, out = str(tmp_path / "mls"), str(tmp_path / "out")
    op, fl = audio(2.5, "opus", sr=48000), audio(3.0, "flac", sr=16000)
    put(src, "mls_polish_opus/train/audio/10/20/10_20_000001.opus", op)
    put(src, "mls_french/train/audio/30/40/30_40_000002.flac", fl)
    put(src, "mls_french/train/audio/30/40/30_40_000003.flac", b"fLaC garbage")
    put(src, "mls_polish_opus/train/transcripts.txt", "10_20_000001\tdzień dobry\n10_20_000009\tbrak\n")
    put(src, "mls_french/train/transcripts.txt", "30_40_000002\tbonjour\n30_40_000003\tcassé\n")
    put(src, "mls_klingon/train/transcripts.txt", "1_2_3\tqapla\n")
    put(src, "mls_klingon/train/audio/1/2/1_2_3.flac", audio(2.5, "flac"))
    import_corpus("mls", src, out, languages=["pl", "fr", "tlh"])
    check(out, {os.path.join(src, "mls_polish_opus/train/audio/10/20/10_20_000001.opus"):
                ("pl", "mls", decoded_16k(op), "10", "polish", "dzień dobry"),
                os.path.join(src, "mls_french/train/audio/30/40/30_40_000002.flac"):
                ("fr", "mls", decoded_16k(fl), "30", "french", "bonjour"),
                os.path.join(src, "mls_klingon/train/audio/1/2/1_2_3.flac"):
                ("tlh", "mls", decoded_16k(audio(2.5, "flac")), "1", "klingon", "qapla")},
          {"mls_polish_opus/train/audio/10/20/10_20_000009.flac": "audio file not found",
           "mls_french/train/audio/30/40/30_40_000003.flac": "undecodable"})


def test_voxpopuli_transcribed(tmp_path):
    src, out = str(tmp_path / "transcribed_data"), str(tmp_path / "out")
    cols = ["id", "raw_text", "normalized_text", "speaker_id", "split", "gender", "is_gold_transcript",
            "accent"]
    ids = ["20180312-0900-PLENARY-15-sv_20180312-16:42:58_3", "20190101-0900-PLENARY-2-sv_x_1"]
    a = audio(4.0, "ogg", sr=16000)
    put(src, f"sv/2018/{ids[0]}.ogg", a)
    put(src, "sv/asr_train.tsv", tsv(cols, [[ids[0], "Herr talman!", "herr talman", "96",
                                             "train", "male", "True", "None"],
                                            [ids[1], "saknas", "saknas", "97", "train", "female", "True",
                                             "None"]]))
    import_corpus("voxpopuli", src, out)
    check(out, {os.path.join(src, f"sv/2018/{ids[0]}.ogg"): ("sv", "voxpopuli", decoded_16k(a), "96", "sv",
                                                             "Herr talman!")},
          {f"sv/2019/{ids[1]}.ogg": "audio file not found"})


def test_lhotse_recordings_supervisions_and_cuts(tmp_path):
    lhotse = pytest.importorskip("lhotse")
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    root = tmp_path / "wavs"
    data = {"a": audio(2.5, seed=1), "b": audio(3.0, sr=8000, seed=2), "c": audio(4.0, seed=3),
            "d": audio(2.5, seed=4)}
    recs = []
    for k, v in data.items():
        put(str(root), f"{k}.wav", v)
        recs.append(Recording.from_file(str(root / f"{k}.wav"), recording_id=k))
    sups = [SupervisionSegment("sa", "a", 0.0, recs[0].duration, language="sv", speaker="s1", text="hej"),
            SupervisionSegment("sb", "b", 0.0, recs[1].duration, language="Swedish", speaker="s2"),
            SupervisionSegment("sc", "c", 1.0, 2.0, language="sv", speaker="s3", text="del"),
            SupervisionSegment("sd", "d", 0.0, recs[3].duration, language="xx", speaker="s4")]
    man = tmp_path / "man"
    man.mkdir()
    RecordingSet.from_recordings(recs).to_file(str(man / "corpus_recordings.jsonl.gz"))
    SupervisionSet.from_segments(sups).to_file(str(man / "corpus_supervisions.jsonl.gz"))
    kept = {str(root / "a.wav"): ("sv", "lhotse", decoded_16k(data["a"]), "s1", "sv", "hej"),
            str(root / "b.wav"): ("sv", "lhotse", decoded_16k(data["b"]), "s2", "Swedish", "")}
    rejected = {str(root / "c.wav"): "segment 1.00-3.00 s", str(root / "d.wav"): "unknown language code 'xx'"}
    import_corpus("lhotse", str(man), str(tmp_path / "out"))
    m = check(str(tmp_path / "out"), kept, rejected)
    assert m.root == ""
    cuts = tmp_path / "cuts"
    cuts.mkdir()
    cs = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs),
                               supervisions=SupervisionSet.from_segments(sups))
    cs.to_file(str(cuts / "c_cuts.jsonl.gz"))
    import_corpus("lhotse", str(cuts), str(tmp_path / "out2"))
    check(str(tmp_path / "out2"), kept, rejected)
    assert lhotse.__version__


def _hf_rows():
    good = [audio(2.5, "flac", seed=1), audio(3.0, "wav", sr=8000, seed=2)]
    return good, {"audio": [{"bytes": good[0], "path": "x1.flac"}, {"bytes": good[1], "path": "x2.wav"},
                            {"bytes": BROKEN, "path": "x3.wav"}, {"bytes": good[0], "path": "x4.flac"}],
                  "language": ["sv", "fi", "sv", "xx"], "sentence": ["hej", "moi", "trasig", "okänd"],
                  "client_id": ["a", "b", "c", "d"]}


def _save_to_disk(cols: dict, src) -> None:
    """What ``datasets.DatasetDict({"train": ds}).save_to_disk(src)`` writes for ``ds`` with the
    ``audio`` column cast to ``Audio(decode=False)``: ``dataset_dict.json`` (the splits), and per
    split an Arrow IPC stream ``data-00000-of-00001.arrow``, ``state.json`` (``_data_files``) and
    ``dataset_info.json`` (``features``). Written with pyarrow because no release of ``datasets``
    installs beside the project's pins (huggingface_hub < 1 for transformers, fsspec 2026.9,
    pyarrow 26); the file names and fields are those of datasets' ``save_to_disk``."""
    import pyarrow as pa

    split = src / "train"
    split.mkdir(parents=True)
    (src / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    table = pa.table(cols)
    with pa.OSFile(str(split / "data-00000-of-00001.arrow"), "wb") as f, \
            pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    (split / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "0" * 16,
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
        "_output_all_columns": False, "_split": None}))
    feats = {"audio": {"sampling_rate": None, "mono": True, "decode": False, "_type": "Audio"},
             **{c: {"dtype": "string", "_type": "Value"} for c in cols if c != "audio"}}
    (split / "dataset_info.json").write_text(json.dumps({"features": feats, "splits": {}}))


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_hf_dataset_folder(tmp_path, layout):
    good, cols = _hf_rows()
    src, out = tmp_path / "hf", str(tmp_path / "out")
    if layout == "save_to_disk":
        _save_to_disk(cols, src)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        src.mkdir()
        pq.write_table(pa.table(cols), str(src / "train-00000-of-00001.parquet"))
    import_corpus("hf", str(src), out)
    a = storage.join(out, "audio", "train")
    check(out, {f"{a}/00000000.flac": ("sv", "hf", decoded_16k(good[0]), "a", "sv", "hej"),
                f"{a}/00000001.wav": ("fi", "hf", decoded_16k(good[1]), "b", "fi", "moi")},
          {f"{a}/00000002.wav": "undecodable", f"{a}/00000003.flac": "unknown language code 'xx'"})


def test_dir_format_with_language_filter_and_synth_sidecar(synth_corpus, tmp_path):
    out = str(tmp_path / "out")
    assert main(["corpus", "import", "--format", "dir", "--src", synth_corpus["root"], "--out", out,
                 "--languages", "fin,sw-KE", "--quiet"]) == 0
    m = Corpus(out).read_manifest()
    full = Manifest.read(synth_corpus["manifest"])
    want = [e for e in full if e.lang in ("fi", "sw")]
    assert [(e.path, e.n_samples, e.lang, e.dataset) for e in m] == [
        (e.path, e.n_samples, e.lang, e.dataset) for e in want]
    side = read_utterances(Corpus(out).utterances_url)
    assert all(u["speaker"].startswith(u["source_lang"] + "+") and u["text"] for u in side)
    assert Corpus(out).stats()["filtered_by_language"] == len(full) - len(want)
