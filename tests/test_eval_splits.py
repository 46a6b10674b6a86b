"""Split rules: the training duration budget, speaker-disjointness, >20 s clips dropped, few-shot
languages, standard vs non-standard labels."""

from __future__ import annotations

import pytest

from mhubert.errors import BadInput
from mhubert.eval.splits import SplitConfig, is_standard, make_splits, parse_duration


@pytest.mark.parametrize("label, seconds, standard", [
    ("10min", 600.0, True), ("1h", 3600.0, True), ("60min", 3600.0, True), ("600s", 600.0, True),
    ("2min", 120.0, False), ("90s", 90.0, False), ("0.5h", 1800.0, False),
])
def test_durations(label, seconds, standard):
    assert parse_duration(label) == seconds
    assert is_standard(label) is standard


@pytest.mark.parametrize("bad", ["10", "ten minutes", "0min", "-1h", ""])
def test_bad_duration(bad):
    with pytest.raises(BadInput, match="duration"):
        SplitConfig(train_per_lang=bad)


def _corpus(n_per_lang=60, seconds=5.0, speakers=6):
    langs, secs, spk = [], [], []
    for lang in ("aa", "bb"):
        for i in range(n_per_lang):
            langs.append(lang)
            secs.append(seconds + (i % 3))             # 5, 6, 7 s
            spk.append(f"{lang}-{i % speakers}" if speakers else None)
    return langs, secs, spk


def test_budget_reached_and_speaker_disjoint():
    langs, secs, spk = _corpus()
    s = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1min", seed=3))
    for lang in ("aa", "bb"):
        train = [i for i in s.train if langs[i] == lang]
        total = sum(secs[i] for i in train)
        # the shortest prefix reaching 60 s: at least 60 s, less than 60 s + one clip (<= 7 s)
        assert 60.0 <= total < 67.0
        assert s.train_seconds[lang] == pytest.approx(total)
        assert s.speaker_disjoint[lang]
        groups = [{spk[i] for i in part if langs[i] == lang} for part in (s.train, s.dev, s.test)]
        assert groups[0] and groups[1] and groups[2]
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert not set(s.train) & set(s.dev) and not set(s.train) & set(s.test) and not set(s.dev) & set(s.test)
    assert s.short == []


def test_unknown_speakers_split_utterances_and_short_languages():
    langs, secs, spk = _corpus(n_per_lang=20, speakers=0)
    s = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1h"))
    assert s.speaker_disjoint == {"aa": False, "bb": False}
    assert s.short == ["aa", "bb"]                    # 20 clips of 5-7 s never make an hour
    assert len(s.train) + len(s.dev) + len(s.test) == 40


def test_long_training_clips_dropped_but_kept_for_test():
    langs, secs, spk = _corpus(n_per_lang=30, speakers=0)
    for i in range(0, len(secs), 2):
        secs[i] = 25.0                                  # every other clip over 20 s
    s = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1h"))
    assert all(secs[i] <= 20.0 for i in s.train)
    assert sum(s.dropped_long.values()) > 0
    assert any(secs[i] > 20.0 for i in s.test + s.dev)


def test_few_shot_languages_get_five_utterances():
    langs, secs, spk = _corpus()
    s = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1min", few_shot=("bb",)))
    assert sum(langs[i] == "bb" for i in s.train) == 5
    assert sum(langs[i] == "aa" for i in s.train) > 5
    assert s.few_shot == ["bb"]
    with pytest.raises(BadInput, match="not in the manifest"):
        make_splits(langs, secs, spk, SplitConfig(few_shot=("zz",)))


def test_deterministic_and_seed_dependent():
    langs, secs, spk = _corpus()
    a = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1min", seed=1))
    b = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1min", seed=1))
    c = make_splits(langs, secs, spk, SplitConfig(train_per_lang="1min", seed=2))
    assert a.to_dict() == b.to_dict()
    assert a.train != c.train


def test_too_few_utterances():
    with pytest.raises(BadInput, match="at least 3"):
        make_splits(["aa", "aa"], [3.0, 3.0], [None, None], SplitConfig())
