"""The import path's columns against Python's own containers: a ``KeySet`` answers ``in`` and
``get`` as a ``set``/``dict`` of the same keys does, and ``RowColumns`` gives back exactly the
paths, speakers, transcripts, ids and durations appended (non-ASCII, empty and tab-holding text
included; durations beyond int32 clipped, too long anyway) for any increasing selection, with
rejected rows in the reject spool in order."""

from __future__ import annotations

import random

import numpy as np

from mhubert.corpus.columns import CHUNK, KeySet, RejectSpool, RowColumns


def _names(rng: random.Random, n: int) -> list[str]:
    alphabet = "abcdefghij/_.-0123456789éøß語"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def test_keyset_answers_as_set_and_dict():
    rng = random.Random(0)
    keys = list(dict.fromkeys(_names(rng, 5000)))
    members, others = keys[:2500], keys[2500:]
    ks = KeySet(iter(members))
    assert len(ks) == len(members)
    ref = set(members)
    for k in keys + ["", "a", members[0] + " "]:
        assert (k in ks) == (k in ref), k
    pairs = {k: rng.randint(-5, 10**9) for k in members}
    kd = KeySet.from_pairs(pairs.items())
    for k in keys:
        assert kd.get(k) == pairs.get(k), k
    assert kd.get(others[0], -7) == -7 and 3 not in ks


def test_row_columns_give_back_what_was_appended():
    rng = random.Random(1)
    n = CHUNK * 2 + 123  # several packed chunks and a partial one
    paths = [f"{p}/{i}.wav" for i, p in enumerate(_names(rng, n))]
    texts = [rng.choice(["", "hej då", "naïve\ttab", "語音 テスト", "x" * 40]) for _ in range(n)]
    spk = [rng.choice(["", "s1", "s2", "ß"]) for _ in range(n)]
    langs = [rng.choice(["sv-SE", "fi", "sw_ke"]) for _ in range(n)]
    ns = [rng.choice([None, rng.randint(0, 10**7), 2**40]) for _ in range(n)]
    rejected = {i for i in range(n) if i % 997 == 5}
    spool = RejectSpool()
    cols = RowColumns(spool)
    for i in range(n):
        cols.append(paths[i], langs[i], "ds", spk[i], texts[i], ns[i],
                    f"bad: row {i}" if i in rejected else None)
    cols.finish()
    kept = [i for i in range(n) if i not in rejected]
    assert len(cols) == len(kept)
    assert spool.read() == [(paths[i], f"bad: row {i}") for i in sorted(rejected)]
    assert spool.kinds == {"bad": len(rejected)} and len(spool) == len(rejected)
    assert [cols.path(j) for j in (0, 1, CHUNK - 1, CHUNK, len(kept) - 1)] == [
        paths[kept[j]] for j in (0, 1, CHUNK - 1, CHUNK, len(kept) - 1)]
    assert cols.n_samples.tolist() == [-1 if ns[i] is None else min(ns[i], 2**31 - 1) for i in kept]
    assert [cols.langs.names[k] for k in cols.lang_ids.tolist()] == [langs[i] for i in kept]
    sel = np.asarray(sorted(rng.sample(range(len(kept)), 5000)), dtype=np.int64)
    assert list(cols.records(sel)) == [(spk[kept[j]], texts[kept[j]].replace("\t", " "))
                                       for j in sel.tolist()]
    blob, off = cols.take_paths(sel)
    got = [bytes(blob[off[k]:off[k + 1]]).decode("utf-8") for k in range(len(sel))]
    assert got == [paths[kept[j]] for j in sel.tolist()]
    cols.close()
    spool.close()


def test_import_rejects_each_repeat_of_a_file_and_keeps_the_first(tmp_path):
    import soundfile as sf

    from mhubert.corpus.importer import import_corpus
    from mhubert.corpus.report import read_rejects

    root = tmp_path / "audio"
    for name in ("a", "b"):
        (root / "ds" / "sv").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / "ds" / "sv" / f"{name}.wav"), np.zeros(40_000, dtype=np.float32), 16_000)
    rows = ["ds/sv/a.wav", "ds/sv/b.wav", "ds/sv/a.wav", "ds/sv/a.wav"]
    tsv = tmp_path / "in.tsv"
    tsv.write_text(f"{root}\n" + "".join(f"{p}\t1\tsv\tds\n" for p in rows))
    res = import_corpus("tsv", str(tsv), str(tmp_path / "out"))
    assert [e.path for e in res.manifest] == ["ds/sv/a.wav", "ds/sv/b.wav"]
    assert [e.n_samples for e in res.manifest] == [40_000, 40_000]
    want = [("ds/sv/a.wav", "duplicate: the same file is listed twice")] * 2
    assert res.rejects == want
    assert read_rejects(str(tmp_path / "out" / "rejects.tsv")) == want
