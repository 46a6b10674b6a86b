"""CER against jiwer (a reference implementation nobody here wrote) and hand-computed values; LID
accuracy; the relative score."""

from __future__ import annotations

import jiwer
import pytest

from mhubert.eval.metrics import (
    cer,
    cer_by_language,
    cer_plot,
    confusion,
    confusion_plot,
    edit_distance,
    lid_accuracy,
    relative_scores,
)

PAIRS = [("HELLO WORLD", "HELO WORLD"), ("ABC", "XBCD"), ("KITTEN", "SITTING"), ("A B", "AB"),
         ("ДОМ ВОДА", "ДАМ ВОДА"), ("ÉTÉ", "ETE"), ("SAME", "SAME"), ("ABCDEF", "")]


def test_edit_distance_hand_computed():
    assert edit_distance("KITTEN", "SITTING") == 3
    assert edit_distance("ABC", "XBCD") == 2
    assert edit_distance("", "AB") == 2
    assert edit_distance("A B", "AB") == 1   # the space is a character


@pytest.mark.parametrize("ref, hyp", PAIRS)
def test_cer_matches_jiwer_per_utterance(ref, hyp):
    assert cer([ref], [hyp]) == pytest.approx(jiwer.cer(ref, hyp), abs=1e-12)


def test_corpus_cer_matches_jiwer():
    refs, hyps = zip(*PAIRS, strict=True)
    assert cer(list(refs), list(hyps)) == pytest.approx(jiwer.cer(list(refs), list(hyps)), abs=1e-12)
    # hand-computed: edits 1+2+3+1+1+2+0+6 = 16 over 11+3+6+3+8+3+4+6 = 44 characters
    assert cer(list(refs), list(hyps)) == pytest.approx(16 / 44)


def test_cer_by_language_and_lid_accuracy():
    out = cer_by_language(["en", "en", "fr"], ["AB", "CD", "EFGH"], ["AB", "C", "EFGX"])
    assert out == {"overall": pytest.approx(2 / 8, abs=1e-6),
                   "per_language": {"en": pytest.approx(0.25, abs=1e-6), "fr": pytest.approx(0.25, abs=1e-6)}}
    assert lid_accuracy(["en", "fr", "fr", "de"], ["en", "fr", None, "fr"]) == 0.5


def test_confusion_has_a_none_column_for_missing_language_tokens():
    rows, cols, cm = confusion(["en", "fr", "fr"], ["en", None, "en"])
    assert rows == ["en", "fr"] and cols == ["en", "fr", "none"]
    assert cm.tolist() == [[1, 0, 0], [1, 0, 1]]


def test_plots_are_png():
    assert cer_plot({"en": 0.1, "fr": 0.3}, "t")[:8] == b"\x89PNG\r\n\x1a\n"
    assert confusion_plot(["en", "fr"], ["en", None], "t")[:8] == b"\x89PNG\r\n\x1a\n"


def test_relative_scores():
    res = {"fbank": {"cer": 0.8, "lid_accuracy": 0.5},
           "iter1": {"cer": 0.6, "lid_accuracy": 0.9},
           "iter3": {"cer": 0.4, "lid_accuracy": 0.7}}
    out = relative_scores(res)
    assert out["scores"]["fbank"] == 0.0
    assert out["scores"]["iter1"] == pytest.approx((500 + 1000) / 2)
    assert out["scores"]["iter3"] == pytest.approx((1000 + 500) / 2)
    assert "NOT" in out["note"] and "SUPERB_s" in out["note"]
    with pytest.raises(ValueError):
        relative_scores({"iter1": {"cer": 0.5}})
