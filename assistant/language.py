"""Which language a message is written in, when it is clearly not English.

The collection, the rules' plain-language examples and the embedding model
are English. A message in another language is matched only by the rules'
patterns for that language, which cannot cover every way of describing an
emergency; the guardrails use :func:`foreign_language` to answer such a
message safely (see ``unreadable_language`` in ``data/red_flags.yaml``).

Language identification is py3langid (langid.py's model, shipped in the
package: no download). Arabic written in Latin letters ("Arabizi": "rekbeta
tel3et 3al janab", the digits standing for Arabic sounds) is not in its
model; :func:`arabizi` recognises it by those digits inside words.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

#: Languages the check reports (others, and langid's guesses for short or
#: junk text such as "zxx" or "la", are treated as not clearly foreign).
LANGUAGES = frozenset("es fr de it pt pl nl sv da no nb fi tr ro cs sk hu el ru uk ar he hi zh ja ko vi id ms tl".split())
#: Languages langid tells apart only by a few words (Indonesian and Malay,
#: the Scandinavian languages, the Romance languages with their regional
#: neighbours and creoles, such as Occitan, Extremaduran and Haitian, which
#: take a share of a short French or Spanish question): their probabilities
#: are added up, since the question is only whether the message is English.
CLOSE_LANGUAGES = {code: group for group in (frozenset("id ms jv".split()), frozenset("no nb nn da sv".split()),
                                             frozenset("cs sk".split()),
                                             frozenset("es pt gl ca an ext oc fr wa ht gcf gcr it lij vec".split()))
                   for code in group}
#: langid's normalised probability (of the language and its close ones) must reach this...
MIN_PROBABILITY = 0.95
#: ... on a message of at least this many words (or CJK characters below).
MIN_WORDS = 5
MIN_CJK_CHARACTERS = 8

#: A word of Arabizi: letters with one of the digits that stand for Arabic
#: sounds (2 hamza, 3 ain, 5 kha, 6 ta, 7 ha, 8 ghain, 9 qaf) inside it or
#: before at least two letters ("wi2i3et", "ma7alla", "3al").
_ARABIZI_WORD = re.compile(r"(?i)^(?:[a-z]+[235-9]+[a-z]+[a-z235-9]*|[a-z]*[235-9][a-z]{2,}[a-z235-9]*)$")
#: English shorthand and quantities that look like it ("gr8", "3sets", "2mins").
_NOT_ARABIZI = re.compile(r"(?i)^(?:\d+(?:x|am|pm|st|nd|rd|th|s|yo|yr|yrs|kg|km|cm|mm|lb|lbs|min|mins|sec|secs|hr|hrs|"
                          r"wk|wks|day|days|sets?|reps?|times|mth|mths|ish)|gr8|l8r|b4|2day|2moro|2morrow|2nite|h8|"
                          r"m8|w8|st8|str8|sk8|l8|2gether|any1|some1|no1|every1)$")
#: A word of leetspeak ("1gn0r3", "t4k3"): 0, 1 or 4 among letters, which
#: Arabizi does not use.
_LEET_WORD = re.compile(r"(?i)^(?=.*[a-z])(?=.*[a-z][014]|.*[014][a-z]).*$")
#: Arabizi words needed, and their share of the message's words.
MIN_ARABIZI_WORDS = 3
MIN_ARABIZI_SHARE = 0.15

_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def foreign_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language when it is clearly a
    language other than English, else None (English, too short to tell,
    or not a language at all)."""
    if arabizi(text):
        return "ar"
    long_enough = len(re.findall(r"\w+", text)) >= MIN_WORDS or len(_CJK.findall(text)) >= MIN_CJK_CHARACTERS
    if not long_enough:
        return None
    with _LOCK:  # py3langid does not say it is thread-safe; the web app serves several users
        ranked = _identifier().rank(text)
    lang = ranked[0][0]
    family = CLOSE_LANGUAGES.get(lang, {lang})
    probability = sum(p for code, p in ranked if code in family)
    return lang if lang in LANGUAGES and probability >= MIN_PROBABILITY else None


def arabizi(text: str) -> bool:
    """Is ``text`` Arabic written in Latin letters with digits for sounds?
    At least :data:`MIN_ARABIZI_WORDS` such words, making up at least
    :data:`MIN_ARABIZI_SHARE` of the words, and not leetspeak (which puts
    digits for letters too)."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    found = [w for w in words if _ARABIZI_WORD.match(w) and not _NOT_ARABIZI.match(w)]
    if sum(bool(_LEET_WORD.match(w)) for w in words) >= 2:
        return False
    return len(found) >= MIN_ARABIZI_WORDS and len(found) >= MIN_ARABIZI_SHARE * len(words)
