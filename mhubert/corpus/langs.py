"""One language code across datasets: the shortest ISO 639 code of the language.

Common Voice says ``sv-SE``, VoxLingua107 ``sv``, FLEURS ``sv_se``, MLS ``swedish``-style names; the
α/β sampler must see one language. :func:`normalize` parses the source's code with ``langcodes``
(IETF BCP 47, with ``language-data`` for names), folds individual languages into their
macrolanguage (``cmn`` -> ``zh``, ``swh`` -> ``sw``) and keeps the shortest ISO 639 code (639-1 where
one exists, else 639-3: ``en``, ``sv``, ``rw``, ``ast``, ``tig``). :data:`OVERRIDES` holds what a
library cannot know; an unknown code raises :class:`UnknownLanguage` (the importers turn it into a
reject with this reason).
"""

from __future__ import annotations

from functools import lru_cache

import langcodes

from mhubert.errors import BadInput

# What the standard does not say, keyed by the lower-cased source code with '_' read as '-'.
OVERRIDES: dict[str, str] = {
    # Norwegian: Bokmål, Nynorsk and the macrolanguage are one language for pretraining (and
    # langcodes would turn "no" into "nb").
    "no": "no", "nb": "no", "nn": "no", "nor": "no", "nob": "no", "nno": "no",
    "nb-no": "no", "nn-no": "no", "no-no": "no",
    # Common Voice's zh-HK is Cantonese speech, not Mandarin written with a Hong Kong region.
    "zh-hk": "yue",
    # FLEURS's Cantonese keeps its own code (langcodes folds yue into the zh macrolanguage).
    "yue": "yue", "yue-hant-hk": "yue",
    # VoxLingua107's pre-standard codes.
    "jw": "jv", "iw": "he",
    # MLS names its languages in English (mls_<language>).
    "english": "en", "german": "de", "dutch": "nl", "french": "fr", "spanish": "es",
    "italian": "it", "portuguese": "pt", "polish": "pl",
}


class UnknownLanguage(BadInput):
    """A language code or name no table and no standard knows."""


@lru_cache(maxsize=4096)
def normalize(code: str) -> str:
    """The one code of the language ``code`` names (see the module docstring)."""
    raw = (code or "").strip()
    key = raw.lower().replace("_", "-")
    if not key:
        raise UnknownLanguage("empty language code")
    if key in OVERRIDES:
        return OVERRIDES[key]
    lang = None
    if langcodes.tag_is_valid(key):
        lang = langcodes.Language.get(langcodes.standardize_tag(key, macro=True)).language
    elif key.isalpha() and len(key) > 3:  # a language name ("Swedish")
        try:
            lang = langcodes.find(raw).language
        except LookupError:
            lang = None
    if not lang or lang in ("und", "mul", "zxx") or lang.startswith("q"):
        raise UnknownLanguage(f"unknown language code {raw!r}")
    if lang in OVERRIDES:
        return OVERRIDES[lang]
    return langcodes.Language.get(lang).language or lang


def try_normalize(code: str) -> tuple[str | None, str | None]:
    """``(code, None)`` or ``(None, reason)``."""
    try:
        return normalize(code), None
    except UnknownLanguage as e:
        return None, str(e)
