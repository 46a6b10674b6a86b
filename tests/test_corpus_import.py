"""One language code across datasets, merging corpora, the no-stale-results rule on import, and
header reads over S3 through the latency proxy (correct, concurrent, resumable)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_corpus_formats import BROKEN, audio, decoded_16k, put

from mhubert import storage
from mhubert.artifacts import Corpus, StaleArtifact
from mhubert.cli import main
from mhubert.corpus.headers import read_headers
from mhubert.corpus.importer import import_corpus
from mhubert.corpus.langs import OVERRIDES, UnknownLanguage, normalize
from mhubert.corpus.report import read_rejects

# The same language as Common Voice, VoxLingua107, FLEURS and MLS spell it -> ISO 639 (639-1 where
# there is one, else 639-3), as mHuBERT-147's statistics.
SPELLINGS = {
    "sv": ["sv-SE", "sv", "sv_se", "swedish"],
    "fr": ["fr", "fr", "fr_fr", "french"],
    "pl": ["pl", "pl", "pl_pl", "polish"],
    "pt": ["pt", "pt", "pt_br", "portuguese"],
    "es": ["es", "es", "es_419", "spanish"],
    "zh": ["zh-CN", "zh", "cmn_hans_cn", "zh-TW"],
    "he": ["he", "iw", "he_il"],
    "jv": ["jv", "jw", "jv_id"],
    "sw": ["sw", "sw", "sw_ke", "swh"],
    "pa": ["pa-IN", "pa", "pa_in"],
    "ast": ["ast", "ast_es"],
    "rw": ["rw", "kin"],
    "tig": ["tig"],
    "fil": ["fil_ph"],
}


@pytest.mark.parametrize("code", sorted(SPELLINGS))
def test_spellings_of_one_language_give_one_code(code):
    assert {normalize(s) for s in SPELLINGS[code]} == {code}


def test_override_table():
    for s in ("no", "nb", "nn", "nn-NO", "nb_no", "nob", "nno"):
        assert normalize(s) == "no", s
    assert normalize("zh-HK") == "yue" and normalize("yue_hant_hk") == "yue"
    assert normalize("zh-CN") == "zh"  # the region alone does not make zh-HK's Cantonese
    for name in ("english", "german", "dutch", "french", "spanish", "italian", "portuguese", "polish"):
        assert OVERRIDES[name] == normalize(name) and len(normalize(name)) == 2
    for bad in ("xx", "zz", "", "qaa", "12"):
        with pytest.raises(UnknownLanguage):
            normalize(bad)


def _tree(root: str, files: dict[str, float]) -> dict[str, bytes]:
    data = {rel: audio(s, seed=i) for i, (rel, s) in enumerate(files.items())}
    for rel, d in data.items():
        put(root, rel, d)
    return data


def test_merge_roots_duplicates_names_and_probabilities(tmp_path):
    t1, t2 = str(tmp_path / "t1"), str(tmp_path / "t2")
    d1 = _tree(t1, {"ds/sv/a.wav": 3.0, "ds/fi/b.wav": 2.5, "ds/fi/b2.wav": 4.0})
    d2 = _tree(t2, {"ds/sv/c.wav": 5.0})
    import_corpus("dir", t1, str(tmp_path / "A"))
    (tmp_path / "b.tsv").write_text(f"{t1}\nds/sv/a.wav\t1\tsv\tother\n")
    import_corpus("tsv", str(tmp_path / "b.tsv"), str(tmp_path / "B"))
    import_corpus("dir", t2, str(tmp_path / "C"))
    out = str(tmp_path / "M")
    assert main(["corpus", "merge", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "C"),
                 "--out", out]) == 0
    c = Corpus(out)
    c.verify()
    m = c.read_manifest()
    assert m.root == ""  # different roots: full paths
    assert storage.read_text(c.manifest_url).split("\n", 1)[0] == ""
    rows = {m[i].path: (m[i].lang, m[i].dataset, m[i].n_samples) for i in range(len(m))}
    j = os.path.join
    assert rows == {j(t1, "ds/sv/a.wav"): ("sv", "ds", 48000), j(t1, "ds/fi/b.wav"): ("fi", "ds", 40000),
                    j(t1, "ds/fi/b2.wav"): ("fi", "ds", 64000), j(t2, "ds/sv/c.wav"): ("sv", "ds-3", 80000)}
    for i in range(len(m)):  # the fairseq fork's reader: os.path.join(root, path)
        assert os.path.exists(os.path.join(m.root, m[i].path)) and m.url_of(i) == m[i].path
    assert read_rejects(c.path("rejects.tsv")) == [(j(t1, "ds/sv/a.wav"),
                                                     f"duplicate: the same file is in {tmp_path / 'A'}")]
    st = c.stats()
    assert st["renamed_datasets"] == {f"{tmp_path / 'C'}:ds": "ds-3"}
    # p_l ∝ (h_l / H)^0.7 and p_{d|l} ∝ (h_ld / h_l)^0.9, by hand
    h = {"sv": 3.0 + 5.0, "fi": 6.5}
    w = {k: (v / 14.5) ** 0.7 for k, v in h.items()}
    p = st["probabilities"]["by_hours"]
    assert p["languages"]["sv"] == pytest.approx(w["sv"] / sum(w.values()))
    wd = {"ds": (3 / 8) ** 0.9, "ds-3": (5 / 8) ** 0.9}
    assert p["lang_dataset"]["sv/ds-3"] == pytest.approx(p["languages"]["sv"] * wd["ds-3"] / sum(wd.values()))
    assert st["languages"]["sv"]["hours"] == pytest.approx(8.0 / 3600)
    assert st["datasets"]["ds-3"]["hours"] == pytest.approx(5.0 / 3600)
    assert len(d1) + len(d2) == len(m) + 0  # nothing else dropped
    # same roots keep the root
    import_corpus("dir", t1, str(tmp_path / "A2"), languages=["fi"])
    same = import_corpus("dir", t1, str(tmp_path / "A3"), languages=["sv"])
    assert same.manifest.root == t1
    from mhubert.corpus.merge import merge_corpora
    mm = merge_corpora([str(tmp_path / "A2"), str(tmp_path / "A3")], str(tmp_path / "M2"), same_names=True)
    assert mm.manifest.root == t1 and sorted(mm.manifest.paths) == sorted(d1)


def test_import_reuses_stops_on_other_settings_and_forces(tmp_path):
    t = str(tmp_path / "t")
    _tree(t, {"ds/sv/a.wav": 3.0, "ds/sv/b.wav": 2.5})
    out = str(tmp_path / "o")
    first = import_corpus("dir", t, out)
    created = Corpus(out).marker().created
    again = import_corpus("dir", t, out)
    assert (first.decision, again.decision) == ("compute", "reuse")
    assert Corpus(out).marker(refresh=True).created == created
    with pytest.raises(StaleArtifact, match="min_seconds"):
        import_corpus("dir", t, out, min_seconds=2.8)
    assert main(["corpus", "import", "--format", "dir", "--src", t, "--out", out, "--min-seconds", "2.8",
                 "--quiet"]) == 2
    forced = import_corpus("dir", t, out, min_seconds=2.8, on_change="force")
    assert forced.decision == "compute" and len(forced.manifest) == 1


def test_several_sources_give_full_urls(tmp_path):
    t1, t2 = str(tmp_path / "v1"), str(tmp_path / "v2")
    _tree(t1, {"sv/x.wav": 3.0})
    _tree(t2, {"fi/y.wav": 3.0})
    assert main(["corpus", "import", "--format", "voxlingua107", "--src", t1, "--src", t2, "--out",
                 str(tmp_path / "o"), "--quiet"]) == 0
    m = Corpus(str(tmp_path / "o")).read_manifest()
    assert m.root == "" and sorted(m.paths) == [os.path.join(t1, "sv/x.wav"), os.path.join(t2, "fi/y.wav")]


def test_header_reads_over_s3_with_latency_are_correct_and_resumable(s3_bucket, request, tmp_path):
    files = {"a.wav": audio(2.5), "long.wav": audio(6.0, sr=22050), "b.flac": audio(9.0, "flac", sr=44100),
             "c.mp3": audio(3.0, "mp3"), "d.opus": audio(2.5, "opus", sr=48000), "e.ogg": audio(2.0, "ogg"),
             "trunc.wav": audio(8.0)[:100_000], "broken.wav": BROKEN, "empty.wav": b""}
    for rel, data in files.items():
        put(s3_bucket, f"h/{rel}", data)
    urls = [f"{s3_bucket}/h/{rel}" for rel in files] + [f"{s3_bucket}/h/missing.wav"]
    proxy = request.getfixturevalue("s3_proxy")  # S3 now reached through the proxy
    proxy.latency_s = 0.02
    ck = str(tmp_path / "ck")
    stop_after = {"batches": 2}

    def interrupt(done, total):
        stop_after["batches"] -= 1
        if stop_after["batches"] == 0:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        read_headers(urls, workers=8, checkpoint=ck, batch=3, progress=interrupt)
    before = proxy.forwarded
    n, why = read_headers(urls, workers=8, checkpoint=ck, batch=3)
    resumed = proxy.forwarded - before
    for i, rel in enumerate(files):
        if rel in ("trunc.wav", "broken.wav", "empty.wav"):
            assert n[i] == -1
        else:
            assert n[i] == decoded_16k(files[rel]), rel
    assert "truncated" in why[6] and "undecodable" in why[7] and "empty" in why[8]
    assert why[9] == "audio file not found"
    # the 6 files read before the interruption are not read again: fewer requests than a full run
    before = proxy.forwarded
    fresh = read_headers(urls, workers=8, checkpoint=str(tmp_path / "ck2"), batch=3)
    full = proxy.forwarded - before
    assert 0 < resumed < full and np.array_equal(fresh[0], n)
    before = proxy.forwarded
    n2, why2 = read_headers(urls, workers=8, checkpoint=ck, batch=3)
    assert proxy.forwarded == before and np.array_equal(n, n2) and why == why2


def test_cli_formats_are_the_registry_and_errors_are_one_line(tmp_path, capsys):
    from mhubert.corpus.cli import FORMATS
    from mhubert.corpus.sources import FORMATS as REGISTRY

    assert sorted(FORMATS) == sorted(REGISTRY)
    assert main(["corpus", "import", "--format", "fleurs", "--src", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "cv").mkdir()
    assert main(["corpus", "import", "--format", "commonvoice", "--src", str(tmp_path / "cv"), "--out",
                 str(tmp_path / "o"), "--splits", "validated-bogus"]) == 2
    assert main(["corpus", "import", "--format", "dir", "--src", str(tmp_path / "cv"), "--out",
                 str(tmp_path / "o"), "--languages", "xx"]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err
    assert main(["corpus", "merge", str(tmp_path / "cv"), str(tmp_path / "cv2"), "--out",
                 str(tmp_path / "m")]) == 2
    assert "no committed corpus" in capsys.readouterr().err
