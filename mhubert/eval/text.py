"""Transcript normalisation and CTC targets as ML-SUPERB prepares them.

ML-SUPERB (espnet ``egs2/ml_superb/asr1``) scores characters of text that had bracketed spans removed,
punctuation stripped and letters upper-cased. The language token of LID and joint ASR+LID is written
``[lang]``. :func:`normalize` follows those rules with :mod:`unicodedata` categories (punctuation is
every ``P*`` character, so scripts other than Latin are handled the same way).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mhubert.errors import BadInput

TASKS = ("lid", "asr", "asr+lid")
BLANK = "<blank>"
UNK = "<unk>"
_BRACKETED = re.compile(r"\[[^\[\]]*\]|\([^()]*\)|<[^<>]*>|\{[^{}]*\}")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Bracketed spans (``[noise]``, ``(laughs)``, ``<unk>``, ``{…}``) removed, punctuation stripped,
    upper-cased, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    prev = None
    while prev != text:  # nested brackets: innermost first
        prev, text = text, _BRACKETED.sub(" ", text)
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _SPACES.sub(" ", text).strip().upper()


def lang_token(lang: str) -> str:
    return f"[{lang}]"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise BadInput(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def target_tokens(task: str, lang: str, text: str | None) -> list[str]:
    """Target token sequence of one utterance: ``[lang]``, characters, or ``[lang]`` then characters.

    ``text`` is already normalised; a space is a character (as ML-SUPERB's character units)."""
    check_task(task)
    if task == "lid":
        return [lang_token(lang)]
    if text is None:
        raise BadInput(f"task {task} needs a transcript for every utterance")
    chars = list(text)
    return [lang_token(lang), *chars] if task == "asr+lid" else chars


@dataclass(frozen=True)
class Vocabulary:
    """CTC token list: index 0 the blank, 1 ``<unk>``, then the sorted tokens."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        seen = sorted({t for seq in sequences for t in seq} - {BLANK, UNK})
        return cls((BLANK, UNK, *seen))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, tokens: Sequence[str]) -> list[int]:
        idx = self.index
        return [idx.get(t, 1) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]


def is_lang_token(token: str) -> bool:
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def split_prediction(tokens: Sequence[str]) -> tuple[str | None, str]:
    """Decoded tokens -> (first language code or None, text without language tokens; ``<unk>``
    becomes U+FFFD, so it still counts as one wrong character)."""
    lang = next((t[1:-1] for t in tokens if is_lang_token(t)), None)
    text = "".join("\ufffd" if t == UNK else t for t in tokens if not is_lang_token(t) and t != BLANK)
    return lang, text
