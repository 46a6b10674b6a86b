"""Two-level sampling against hand-computed values and the formula of mHuBERT-147's fairseq fork."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mhubert.data.sampling import TwoLevelSampler, budgeted_sample, two_level_probabilities
from mhubert.errors import BadInput


def test_hand_computed_two_language_example():
    # en: 80 (a) + 20 (b) = 100 utterances, sw: 25 (c). N = 125. alpha = beta = 0.5.
    p = two_level_probabilities({("en", "a"): 80, ("en", "b"): 20, ("sw", "c"): 25}, 0.5, 0.5)
    # p_en ∝ (100/125)^.5 = sqrt(.8), p_sw ∝ sqrt(.2)  ->  p_en = 2/3, p_sw = 1/3
    # within en: (0.8)^.5 : (0.2)^.5 = 2 : 1
    assert p[("en", "a")] == pytest.approx(2 / 3 * 2 / 3)
    assert p[("en", "b")] == pytest.approx(2 / 3 * 1 / 3)
    assert p[("sw", "c")] == pytest.approx(1 / 3)


def test_alpha_beta_one_is_proportional_and_zero_is_uniform():
    counts = {("en", "a"): 60, ("en", "b"): 30, ("fi", "a"): 10}
    p1 = two_level_probabilities(counts, 1.0, 1.0)
    for k, v in counts.items():
        assert p1[k] == pytest.approx(v / 100)
    p0 = two_level_probabilities(counts, 0.0, 0.0)
    assert p0[("en", "a")] == pytest.approx(0.25) and p0[("fi", "a")] == pytest.approx(0.5)


def _formula(counts, alpha, beta):
    """Direct transcription of get_language_distribution / get_dataset_distribution."""
    langs = sorted({k[0] for k in counts})
    n_l = np.array([sum(v for k, v in counts.items() if k[0] == lang) for lang in langs], float)
    pl = (n_l / n_l.sum()) ** alpha
    pl /= pl.sum()
    out = {}
    for lang, p in zip(langs, pl, strict=True):
        ks = [k for k in counts if k[0] == lang]
        w = np.array([(counts[k] / sum(counts[j] for j in ks)) ** beta for k in ks])
        out.update({k: p * wi / w.sum() for k, wi in zip(ks, w, strict=True)})
    return out


def _keys():
    sizes = {("en", "mls"): 3000, ("en", "cv"): 800, ("de", "cv"): 600, ("de", "vp"): 50,
             ("sw", "cv"): 40, ("fi", "vp"): 10}
    return [k for k, n in sizes.items() for _ in range(n)], sizes


def test_large_draw_matches_formula_within_one_percent():
    keys, sizes = _keys()
    s = TwoLevelSampler(keys, alpha=0.7, beta=0.9, seed=3)
    expected = _formula(sizes, 0.7, 0.9)
    for k, v in expected.items():
        assert s.probabilities[k] == pytest.approx(v, rel=1e-9)
    draws = np.concatenate([s.epoch(e) for e in range(20)])
    assert draws.dtype == np.int64 and draws.size == 20 * len(keys)
    freq = Counter(keys[i] for i in draws)
    for k, v in expected.items():
        assert abs(freq[k] / draws.size - v) < 0.01, (k, freq[k] / draws.size, v)
    # Up-sampling is real: fi has 10 of 4500 utterances (0.2 %) but gets several times more.
    assert freq[("fi", "vp")] / draws.size > 3 * 10 / len(keys)


def test_epoch_is_permute_and_concatenate_or_truncate():
    keys, sizes = _keys()
    s = TwoLevelSampler(keys, seed=1)
    idx = s.epoch(0)
    assert len(idx) == len(keys)
    sizes_drawn = s.group_sizes(0)
    assert sum(sizes_drawn.values()) == len(keys)
    for k, m in sizes_drawn.items():
        got = Counter(int(i) for i in idx if keys[i] == k)
        assert sum(got.values()) == m
        n = sizes[k]
        # every utterance appears floor(m/n) or ceil(m/n) times (no utterance starves)
        lo, hi = m // n, -(-m // n)
        assert all(lo <= got.get(i, 0) <= hi for i in range(len(keys)) if keys[i] == k), k
    assert sizes_drawn[("en", "mls")] < sizes[("en", "mls")]  # down-sampled: no repeats
    assert max(Counter(int(i) for i in idx if keys[i] == ("en", "mls")).values()) == 1


def test_epochs_are_deterministic_and_differ():
    keys, _ = _keys()
    a, b = TwoLevelSampler(keys, seed=7), TwoLevelSampler(keys, seed=7)
    np.testing.assert_array_equal(a.epoch(4), b.epoch(4))
    assert not np.array_equal(a.epoch(4), a.epoch(5))
    assert not np.array_equal(a.epoch(4), TwoLevelSampler(keys, seed=8).epoch(4))


def test_weights_give_hour_based_probabilities():
    keys = [("en", "a")] * 10 + [("sw", "b")] * 10
    hours = [1.0] * 10 + [9.0] * 10  # same counts, sw has 9x the audio
    s = TwoLevelSampler(keys, alpha=1.0, beta=1.0, weights=hours)
    assert s.probabilities[("sw", "b")] == pytest.approx(0.9)
    assert TwoLevelSampler(keys, alpha=1.0).probabilities[("sw", "b")] == pytest.approx(0.5)


def test_budgeted_sample_fills_the_budget_by_hours():
    keys = [("en", "a")] * 200 + [("fi", "b")] * 5
    dur = [10.0] * 200 + [4.0] * 5  # en 2000 s, fi 20 s
    budget = 1000.0
    idx = budgeted_sample(keys, dur, budget, alpha=0.5, beta=1.0, seed=0)
    probs = two_level_probabilities({("en", "a"): 2000.0, ("fi", "b"): 20.0}, 0.5, 1.0)
    fi = [i for i in idx if keys[i] == ("fi", "b")]
    en = [i for i in idx if keys[i] == ("en", "a")]
    target_fi = probs[("fi", "b")] * budget           # ~90.9 s: 4 whole repeats + 2 utterances
    full = int(target_fi // 20.0)
    counts = Counter(fi)
    assert all(c >= full for c in counts.values()) and len(counts) == 5
    assert target_fi - 4.0 < 4.0 * len(fi) <= target_fi
    target_en = probs[("en", "a")] * budget           # under the group's size: random, no repeats
    assert len(set(en)) == len(en)
    assert target_en - 10.0 < 10.0 * len(en) <= target_en
    assert np.all(np.diff(idx) >= 0)


@pytest.mark.parametrize("call,needle", [
    (lambda: two_level_probabilities({}, 0.7, 0.9), "no .lang, dataset. groups"),
    (lambda: two_level_probabilities({("a", "b"): 1}, 1.5, 0.9), "alpha"),
    (lambda: two_level_probabilities({("a", "b"): -1}, 0.7, 0.9), "non-negative"),
    (lambda: TwoLevelSampler([]), "at least one"),
    (lambda: TwoLevelSampler([("a", "b")], weights=[1, 2]), "weights"),
    (lambda: budgeted_sample([("a", "b")], [1.0], 0), "budget"),
])
def test_bad_input(call, needle):
    with pytest.raises(BadInput, match=needle):
        call()
