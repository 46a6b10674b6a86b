"""ML-SUPERB text normalisation and CTC targets."""

from __future__ import annotations

import pytest

from mhubert.errors import BadInput
from mhubert.eval.text import Vocabulary, normalize, split_prediction, target_tokens


@pytest.mark.parametrize("raw, expected", [
    ("Hello, world!", "HELLO WORLD"),
    ("[noise] the cat (laughs) sat <unk> down {breath}", "THE CAT SAT DOWN"),
    ("a [b [nested] c] d", "A D"),
    ("  l'été   à Paris... ", "L ÉTÉ À PARIS"),
    ("¿Qué tal? «Bien»", "QUÉ TAL BIEN"),
    ("straße", "STRASSE"),                       # Python's full case mapping, as str.upper()
    ("हिन्दी, भाषा।", "हिन्दी भाषा"),             # danda is punctuation; Devanagari has no case
    ("дом — вода", "ДОМ ВОДА"),
    ("[only noise]", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_targets_per_task():
    assert target_tokens("lid", "sw", None) == ["[sw]"]
    assert target_tokens("asr", "sw", "AB C") == ["A", "B", " ", "C"]
    assert target_tokens("asr+lid", "sw", "AB") == ["[sw]", "A", "B"]
    with pytest.raises(BadInput, match="transcript"):
        target_tokens("asr", "sw", None)
    with pytest.raises(BadInput, match="task must be one of"):
        target_tokens("asr-lid", "sw", "A")


def test_vocabulary_and_prediction_split():
    v = Vocabulary.build([["[en]", "A", "B"], ["[fr]", "B", " "]])
    assert v.tokens[:2] == ("<blank>", "<unk>")
    assert v.encode(["A", "Z"]) == [v.index["A"], 1]
    ids = v.encode(["[fr]", "A", "<unk>", "B", "[en]"])
    assert split_prediction(v.decode(ids)) == ("fr", "A\ufffdB")
    assert split_prediction(["A"]) == (None, "A")
