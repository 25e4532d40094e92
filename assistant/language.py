"""Which language a message is written in, when it is clearly not English.

The collection, the rules' plain-language examples and the embedding model
are English. A message in another language is matched only by the rules'
patterns for that language, which cannot cover every way of describing an
emergency; the guardrails use :func:`foreign_language` to answer such a
message safely (see ``unreadable_language`` in ``data/red_flags.yaml``).

Language identification is py3langid (langid.py's model, shipped in the
package: no download).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

#: Languages the check reports (others, and langid's guesses for short or
#: junk text such as "zxx" or "la", are treated as not clearly foreign).
LANGUAGES = frozenset("es fr de it pt pl nl sv da no nb fi tr ro cs sk hu el ru uk ar he hi zh ja ko vi id ms tl".split())
#: langid's normalised probability must reach this...
MIN_PROBABILITY = 0.95
#: ... on a message of at least this many words (or CJK characters below).
MIN_WORDS = 5
MIN_CJK_CHARACTERS = 8

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
    long_enough = len(re.findall(r"\w+", text)) >= MIN_WORDS or len(_CJK.findall(text)) >= MIN_CJK_CHARACTERS
    if not long_enough:
        return None
    with _LOCK:  # py3langid does not say it is thread-safe; the web app serves several users
        lang, probability = _identifier().classify(text)
    return lang if lang in LANGUAGES and probability >= MIN_PROBABILITY else None
