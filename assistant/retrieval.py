"""Find the passages that answer a question.

Hybrid retrieval: dense (FAISS over MiniLM vectors) and lexical (BM25), fused
by a weighted sum of their scores (:func:`combine`; weighted reciprocal rank
fusion, :func:`fuse`, stays selectable with ``fusion="rrf"``). ``dense`` and
``bm25`` alone stay selectable for comparison. Before searching, the question is

1. resolved against earlier user turns when it is a follow-up ("and how do
   I fix that?" is searched together with the question it follows; so is a
   question nothing answers on its own, "how far down do I go"), and
2. spell-corrected word by word against the collection's own vocabulary,
   only for words that are neither in the collection nor whole words known
   to the model's tokenizer (so "kneecp" becomes "kneecap", but "shoulder"
   stays "shoulder").

Dense scoring looks at a chunk as a whole and at its best sentence (both
are in the index), so a question that one sentence answers finds its passage.
The lexical side also searches the collection's words for the patients' words
in the question (``data/lay_terms.yaml``: "gives way" adds "buckles").

Every hit carries its cosine similarity to the query (``dense_score``), even
when only BM25 found it, so guardrails can judge evidence on one scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from .schema import Hit, Turn

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

# Words that make a message lean on what came before it.
_ANAPHORA = {"it", "its", "it's", "that", "this", "those", "these", "they", "them", "there", "one",
             "same", "such", "he", "she", "him", "her"}
_CONNECTORS = ("and ", "also ", "so ", "but ", "what about", "how about", "then ", "ok ", "okay ",
               "what if", "and?", "why?", "how?", "really", "anything else", "what else", "more ")

# Common words that carry no topic (for deciding whether a message stands alone).
_FUNCTION_WORDS = set("""a an the i me my we our you your he she it they them is are was were be been
being am do does did doing have has had having can could should would will shall may might must
of in on at to for from by with about as into through over under again further then once here there
when where why how what which who whom this that these those and but if or because until while so
than too very just not no nor only own same s t don now up down out off any both each few more most
other some such yes ok okay please thanks thank hi hello hey get got fix help tell know want like
also really still even much many way thing things lot""".split())


def content_words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower().strip("'-") for m in _WORD.finditer(text))
            if w and w not in _FUNCTION_WORDS and len(w) > 1]


def points_back(question: str) -> bool:
    """Does ``question`` name something from an earlier turn ("it", "that
    one", "the same")?"""
    return any(m.group(0).lower() in _ANAPHORA for m in _WORD.finditer(question))


def is_followup(question: str) -> bool:
    """Does ``question`` lean on an earlier turn to make sense?"""
    q = question.strip().lower()
    words = [m.group(0).lower() for m in _WORD.finditer(q)]
    if not words:
        return False
    if q.startswith(_CONNECTORS) or any(w in _ANAPHORA for w in words):
        return True
    # A fragment such as "exercises?" or "why?"; "what is the Q-angle" stands alone.
    return len(words) <= 2 and len(content_words(q)) <= 1


#: An earlier turn this short ("how small exactly") is itself a follow-up:
#: a question leaning on it is read with the turn before it too.
FRAGMENT_MAX_WORDS = 3


def resolve_followup(question: str, history: Sequence[Turn | dict] = (), force: bool = False) -> str:
    """The text to search for: the question, joined with the previous user
    turn when the question is a follow-up.

    >>> resolve_followup("and how do I fix that?", [Turn("user", "why does my knee buckle?")])
    'why does my knee buckle? and how do I fix that?'
    """
    users = [t for t in (_as_turn(t) for t in history) if t.role == "user" and t.content.strip()]
    if not users or not (force or is_followup(question)):
        return question
    previous = users[-1].content.strip()
    # A chain of follow-ups ("and that?" after "and why?", "and the outer
    # one?" after "how small exactly") reaches further back.
    if len(users) > 1 and (is_followup(previous) or len(_WORD.findall(previous)) <= FRAGMENT_MAX_WORDS):
        previous = users[-2].content.strip() + " " + previous
    return f"{previous} {question.strip()}"


def _as_turn(turn) -> Turn:
    if isinstance(turn, Turn):
        return turn
    return Turn(str(turn.get("role", "")), str(turn.get("content", "")))


LAY_TERMS_PATH = Path(__file__).with_name("data") / "lay_terms.yaml"
MISSPELLINGS_PATH = Path(__file__).with_name("data") / "misspellings.yaml"

DENSE_SCORE_USES_SENTENCES = True

#: A question with history whose best sentence cosine is below this does not
#: stand alone: it is read together with the previous user turn.
STANDALONE_MIN = 0.45

#: A fragment in a conversation is off-topic only when it is this close to an
#: off-topic anchor ("tell me a joke then" 0.87, "and python?" 0.46; "what do
#: the other ones do then" is 0.36).
OFF_TOPIC_CLEAR = 0.42

#: Share of a follow-up's dense vector taken from the new question alone
#: (the rest from the question read with the earlier turn). Measured on the
#: 84 follow-ups with history in evals/: recall@1 0.774 with the joined text
#: alone, 0.821 at 0.7 (0.786 at 0.6, 0.798 at 0.8 to 1.0).
FOLLOWUP_QUESTION_WEIGHT = 0.7

#: Weight of the best sentence against the whole chunk in dense scoring.
SENTENCE_WEIGHT = 0.5


@lru_cache(maxsize=4)
def load_lay_terms(path: str = str(LAY_TERMS_PATH)) -> tuple[tuple[re.Pattern, str], ...]:
    """(pattern over the "said" phrases, the collection's "terms") per entry."""
    import yaml

    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    out = []
    for i, entry in enumerate(entries):
        said, terms = entry.get("said"), entry.get("terms")
        if not isinstance(said, list) or not said or not isinstance(terms, str):
            raise ValueError(f"{path}: entry {i + 1} needs a 'said' list and a 'terms' string")
        phrases = sorted((str(p) for p in said), key=len, reverse=True)
        out.append((re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b", re.I), terms))
    return tuple(out)


@lru_cache(maxsize=4)
def load_misspellings(path: str = str(MISSPELLINGS_PATH)) -> tuple[re.Pattern, dict[str, str]]:
    """One pattern over every listed misspelling, and misspelling -> spelling."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected 'spelling: [misspellings, ...]' lines")
    fixes: dict[str, str] = {}
    for right, wrongs in data.items():
        if not isinstance(wrongs, list) or not wrongs:
            raise ValueError(f"{path}: {right!r} needs a list of misspellings")
        for wrong in wrongs:
            fixes[" ".join(str(wrong).lower().split())] = str(right)
    if not fixes:
        return re.compile(r"(?!x)x"), {}
    phrases = sorted(fixes, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w'])(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases) + r")(?![\w'])", re.I)
    return pattern, fixes


#: "30°", "30 º", "30deg": a number of degrees, as the collection writes it
_DEGREES = re.compile(r"(\d)\s*(?:°|º|˚|deg\b\.?|degs\b\.?)")


def respell(text: str) -> str:
    """``text`` with the listed misspellings (``data/misspellings.yaml``)
    corrected, and a degree sign written as the word ("30°" -> "30 degrees")."""
    pattern, fixes = load_misspellings()
    text = _DEGREES.sub(r"\1 degrees", text)
    return pattern.sub(lambda m: fixes.get(" ".join(m.group(0).lower().split()), m.group(0)), text)


def expand_lay_terms(query: str, lay_terms=None) -> str:
    """``query`` plus the collection's words for the patients' words in it.

    Only words the query does not already hold (by stem) are added, so a word
    that is its own collection term ("exercise") is not counted twice.
    """
    lay_terms = load_lay_terms() if lay_terms is None else lay_terms
    extra = _lay_matches(query, lay_terms)
    if not extra:
        return query
    stem = _stemmer()
    have = {stem(w.lower()) for w in _WORD.findall(query)}
    new = []
    for word in " ".join(extra).split():
        key = stem(word.lower())
        if key not in have:
            have.add(key)
            new.append(word)
    return f"{query} {' '.join(new)}" if new else query


def lay_phrases(query: str, lay_terms=None) -> list[tuple[str, str]]:
    """(the patient's phrase as written, the collection's terms) for each lay
    phrase in ``query``, longest first; a phrase inside a longer one that
    matched is not counted again, so "inner quad" brings the VMO's names,
    not those of the whole quadriceps ("quad") and of the inside ("inner")
    too."""
    lay_terms = load_lay_terms() if lay_terms is None else lay_terms
    found = sorted(((m.start(), m.end(), terms) for pattern, terms in lay_terms
                    for m in pattern.finditer(query)), key=lambda f: (f[0] - f[1], f[0]))
    taken: list[tuple[int, int]] = []
    out: list[tuple[str, str]] = []
    for start, end, terms in found:
        if any(start < t_end and t_start < end and (start, end) != (t_start, t_end)
               for t_start, t_end in taken):
            continue
        taken.append((start, end))
        out.append((query[start:end], terms))
    return out


def _lay_matches(query: str, lay_terms) -> list[str]:
    """The collection's terms for the lay phrases in ``query`` (see :func:`lay_phrases`)."""
    return list(dict.fromkeys(terms for _, terms in lay_phrases(query, lay_terms)))


def lean_on_question(whole, own):
    """The unit vector :data:`FOLLOWUP_QUESTION_WEIGHT` of the way from a
    follow-up read with its earlier turn (``whole``) to the new question on
    its own (``own``): what retrieval ranks a follow-up's passages by, and
    what the composer scores its sentences against."""
    import numpy as np

    mixed = FOLLOWUP_QUESTION_WEIGHT * own + (1 - FOLLOWUP_QUESTION_WEIGHT) * whole
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else whole


def _stemmer():
    """The Snowball stemmer BM25 uses (one shared instance)."""
    from .index import _english_stemmer

    return _english_stemmer().stemWord


def combine(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]],
            dense_weight: float = 0.7, bm25_weight: float = 0.3) -> list[tuple[int, float]]:
    """Convex combination of dense and BM25 scores (best first).

    Dense scores are cosines (already on a fixed scale); BM25 scores are
    divided by the best BM25 score of the query, so both lie in [0, 1]. An
    item missing from a list scores 0 there. Unlike rank fusion, a passage
    far ahead on one side keeps that lead (Bruch et al., "An Analysis of
    Fusion Functions for Hybrid Retrieval", 2023).
    """
    total = dense_weight + bm25_weight
    wd, wb = dense_weight / total, bm25_weight / total
    top = max((score for _, score in lexical), default=0.0)
    scores: dict[int, float] = {row: wd * max(score, 0.0) for row, score in dense}
    if top > 0:
        for row, score in lexical:
            scores[row] = scores.get(row, 0.0) + wb * score / top
    return sorted(scores.items(), key=lambda kv: -kv[1])


#: The lexical side of hybrid search scores the chunks of this many best
#: documents (by dense rank, and as many by BM25 rank), each document with its
#: own word statistics; 0 scores every chunk with the whole index's statistics.
POOL_DOCUMENTS = 3
#: At most this many chunks are scored that way.
POOL_MAX_CHUNKS = 1000


def local_bm25(query: str, rows: Sequence[int], index, k1: float = 1.5, b: float = 0.75) -> list[tuple[int, float]]:
    """BM25 (Lucene's variant, bm25s's defaults) of the chunk ``rows`` with word
    statistics (document frequency, mean length) taken from those rows only.

    Why: unrelated documents added to an index change BM25's statistics for
    the subject's own passages. Words of the subject become rare overall,
    so "knee" comes to weigh nearly as much as "tape", while everyday words
    ("years", "number") become common and lose weight; the ranking among the
    subject's passages shifts. Scored among the documents the question is
    about, the subject's passages keep the contrast they had on their own.
    With a small index whose documents are all in the pool, this is plain
    BM25 over the index.
    """
    import math
    from collections import Counter

    from .index import bm25_tokenize

    rows = list(dict.fromkeys(rows))
    tok = bm25_tokenize([query]) if query.strip() else None
    inv = {i: t for t, i in tok.vocab.items()} if tok else {}
    q_list = [inv[i] for i in tok.ids[0]] if tok else []  # with repeats, as bm25s counts them
    q_terms = set(q_list)
    if not rows or not q_terms:
        return []
    docs = index.term_counts(rows)
    lengths = [sum(d.values()) for d in docs]
    n = len(docs)
    avgdl = sum(lengths) / n or 1.0
    df = Counter(t for d in docs for t in q_terms if t in d)
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in q_terms}
    out = []
    for row, d, dl in zip(rows, docs, lengths):
        score = sum(idf[t] * d[t] / (d[t] + k1 * (1 - b + b * dl / avgdl)) for t in q_list if t in d)
        if score > 0:
            out.append((row, score))
    return sorted(out, key=lambda kv: -kv[1])


def fuse(rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None,
         k: int = 60) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of several rankings of the same items.

    An item at rank r (1-based) in ranking i scores ``weights[i] / (k + r)``;
    scores add up over rankings. Returns (item, score), best first; ties keep
    the order in which items were first seen.
    """
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass
class Speller:
    """Corrects likely typos to words of the collection (see module doc)."""

    vocabulary: frozenset[str]
    known_words: frozenset[str]

    def __post_init__(self):
        import Stemmer

        self._stem = Stemmer.Stemmer("english").stemWord
        # sorted, so that ties between equally close words break the same way every run
        self._vocab = tuple(sorted(self.vocabulary))
        self._known = tuple(sorted(self.known_words))
        self._stems = frozenset(self._stem(w) for w in (*self._vocab, *self._known))

    def correct(self, text: str) -> str:
        def fix(match: re.Match) -> str:
            word = match.group(0)
            low = word.lower()
            # Short words are too easy to "correct" into another word (gout -> out).
            if len(low) < 5 or low in self.vocabulary or low in self.known_words or low in _FUNCTION_WORDS:
                return word
            if self._stem(low) in self._stems:  # an inflection of a known word ("buckling")
                return word
            best = _closest(low, self._vocab, 1 if len(low) < 6 else 2)
            if best is None:  # a common word the collection does not use ("strenghten")
                best = _closest(low, self._known, 1, keep=_slip_of)
            return best or word

        return _WORD.sub(fix, respell(text))


def _slip_of(typed: str, word: str) -> bool:
    """Could ``typed`` be ``word`` with one letter left out ("diffrent",
    "walkin") or two neighbours swapped ("strenghten"), the first letter
    kept? Only such slips are corrected into a word of the model's
    vocabulary: most other one-letter differences are real words the
    vocabulary happens to lack ("pilates" is not "pirates", "puffy" not
    "puff", "steroid" not "asteroid"). Some still slip through: "payoff"
    becomes "playoff"."""
    if not typed or not word or typed[0] != word[0]:
        return False
    if len(word) == len(typed) + 1:
        return any(word[:i] + word[i + 1:] == typed for i in range(1, len(word)))
    if len(word) == len(typed):
        diff = [i for i, (a, b) in enumerate(zip(typed, word)) if a != b]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and typed[diff[0]] == word[diff[1]] and typed[diff[1]] == word[diff[0]]
    return False


def model_words(embedder) -> frozenset[str]:
    """Whole words of the embedding model's tokenizer vocabulary ("rowing",
    "kneeling"): real words, never corrected as typos. Empty for an embedder
    without a tokenizer."""
    tokenizer = getattr(getattr(embedder, "model", None), "tokenizer", None)
    if tokenizer is None:
        return frozenset()
    return frozenset(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii())


def _closest(word: str, choices: Sequence[str], cutoff: int,
             keep: Callable[[str, str], bool] | None = None) -> str | None:
    """The choice nearest ``word`` by edit distance, at most ``cutoff`` edits
    and at most a quarter of the longer word's letters beyond one edit
    ("mcconel" -> "mcconnell", not "statin" -> "state"). Ties go to a choice
    with the same first letter (typos seldom change it: "sholder" ->
    "shoulder", not "holder"), then alphabetically. ``keep(word, choice)``,
    when given, must accept a choice."""
    from rapidfuzz import process
    from rapidfuzz.distance import DamerauLevenshtein

    found = process.extract(word, choices, scorer=DamerauLevenshtein.distance, score_cutoff=cutoff, limit=20)
    found = [(c, d) for c, d, _ in found if (d <= 1 or d / max(len(word), len(c)) <= 0.25)
             and (keep is None or keep(word, c))]
    if not found:
        return None
    return min(found, key=lambda cd: (cd[1], cd[0][:1] != word[:1], cd[0]))[0]


class Retriever:
    """Searches one open :class:`~assistant.index.Index` (state: the index,
    the embedder and the speller built from the index's vocabulary)."""

    def __init__(self, index, embedder, settings):
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self._speller: Speller | None = None

    @property
    def speller(self) -> Speller:
        if self._speller is None:
            vocab = set()
            for chunk in self.index.chunks[:200_000]:
                vocab.update(w.lower() for w in _WORD.findall(chunk.title + " " + chunk.text) if len(w) >= 3)
            self._speller = Speller(frozenset(vocab), model_words(self.embedder))
        return self._speller

    def prepare_query(self, question: str, history: Sequence[Turn | dict] = (), in_context: bool = False) -> str:
        """Follow-up resolution, then spelling correction.

        Besides the follow-ups :func:`is_followup` sees ("and why?"), a
        question that does not stand alone is read with the previous user
        turn: nothing in the collection is close to it on its own (best
        sentence cosine below :data:`STANDALONE_MIN`) and it is not
        off-topic ("how far down do I go" after "how do I do wall slides").
        ``in_context`` reads any question with history that way, unless it
        is off-topic on its own (the pipeline's second reading of a question
        the collection could not answer alone).
        """
        question = self.speller.correct(question)
        new_subject = self._new_subject(question) if history else None
        if new_subject:
            return new_subject
        resolved = resolve_followup(question, history)
        if resolved == question and in_context and history and not self._off_topic(question, fragment_ok=True):
            resolved = resolve_followup(question, history, force=True)
        if resolved == question and history and not self._stands_alone(question):
            resolved = resolve_followup(question, history, force=True)
        if resolved != question:
            # The earlier turn gives the topic, the new one what is asked about
            # it ("how do I fix that?"): say the new one twice so its words
            # weigh as much as the earlier turn's.
            resolved = f"{resolved} {question}"
        return self.speller.correct(resolved)

    def _new_subject(self, question: str) -> str | None:
        """What a message asks once it says it leaves the earlier turns ("ok
        different thing, what about taping" -> "what about taping"), when it
        does not point back to them ("... is it good for it?"); else None.
        Read on its own, without the earlier turn. The phrases are
        ``topic_switches`` in scope.yaml."""
        from .guardrails import guardrails_for

        rests = guardrails_for(self.embedder).after_topic_switches(question)
        if not rests:
            return None
        return rests[0] if rests[0] and not points_back(rests[0]) else None

    def _stands_alone(self, question: str) -> bool:
        best = self.index.sentence_search(self.embedder.encode_query(question), 1) if len(self.index) else []
        if best and best[0][1] >= STANDALONE_MIN:
            return True
        return self._off_topic(question)

    def _off_topic(self, question: str, fragment_ok: bool = False) -> bool:
        """Nearer the off-topic anchors than the topic. With ``fragment_ok``,
        a fragment of two content words or fewer ("what do the other ones
        do then") must also be clearly near one (:data:`OFF_TOPIC_CLEAR`):
        with so few words, its cosines say little."""
        from .guardrails import guardrails_for

        on, off = guardrails_for(self.embedder).topic_scores(question, self.settings.topic)
        if fragment_ok and len(content_words(question)) <= 2:
            return off > on and off >= OFF_TOPIC_CLEAR
        return off > on

    def search(self, question: str, history: Sequence[Turn | dict] = (), k: int | None = None,
               mode: str | None = None) -> list[Hit]:
        """The k best passages for ``question`` (default settings.k), best first."""
        query = self.prepare_query(question, history)
        return self.search_prepared(query, k=k, mode=mode, question=question)

    def _lean_on_question(self, qvec, query: str, question: str | None):
        """The dense vector passages are ranked by. For a follow-up read with
        an earlier turn (``query`` differs from ``question``), it leans on
        what is newly asked: :data:`FOLLOWUP_QUESTION_WEIGHT` of the
        question's own vector plus the rest of the whole query's (``qvec``).
        BM25 still searches the whole query, so the earlier turn keeps the
        topic; the hits' ``dense_score`` stays the whole query's cosine, the
        scale the guardrails are calibrated on."""
        if question is None:
            return qvec
        asked = self.speller.correct(question)
        if asked.strip() == query.strip() or not asked.strip():
            return qvec
        return lean_on_question(qvec, self.embedder.encode_query(asked))

    def search_prepared(self, query: str, k: int | None = None, mode: str | None = None,
                        query_vector=None, question: str | None = None) -> list[Hit]:
        """The k best passages for a prepared query (see :meth:`prepare_query`);
        ``question``, the user's own words, shapes a follow-up's dense vector
        (:meth:`_lean_on_question`)."""
        k = self.settings.k if k is None else k
        mode = mode or self.settings.retriever
        if mode not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"retriever {mode!r} is not one of hybrid, dense, bm25")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        index = self.index
        if len(index) == 0 or not query.strip():
            return []
        fetch = max(k, self.settings.fetch_k)
        full = self.embedder.encode_query(query) if query_vector is None else query_vector
        qvec = full if query_vector is not None else self._lean_on_question(full, query, question)
        if self.settings.query_adapter and index.adapter is not None:
            # passages are ranked by the adapted vector; their cosines (what
            # the guardrails read) stay the model's own, from ``full``
            from .adapter import adapt

            qvec = adapt(index.adapter, qvec)
        lexical = index.bm25_search(expand_lay_terms(query), fetch) if mode in ("hybrid", "bm25") else []
        bm25_by_row = dict(lexical)
        if mode == "dense":
            ranked = self._dense(qvec, fetch)
        elif mode == "bm25":
            ranked = list(lexical)
        elif self.settings.fusion == "rrf":
            dense = self._dense(qvec, fetch)
            ranked = fuse([[r for r, _ in dense], [r for r, _ in lexical]],
                          [self.settings.dense_weight, self.settings.bm25_weight], self.settings.rrf_k)
        else:
            # every candidate of either side gets its dense score, so the sum is fair
            dense = self._dense(qvec, fetch, extra_rows=[r for r, _ in lexical])
            if POOL_DOCUMENTS:
                lexical = self._lexical_in_pool(query, dense, lexical)
                bm25_by_row = dict(lexical)
            ranked = combine(dense, lexical, self.settings.dense_weight, self.settings.bm25_weight)
        if self.settings.reranker:
            ranked = self._rerank(query, ranked, max(k, self.settings.rerank_top))
        ranked = ranked[:k]
        rows = [row for row, _ in ranked]
        cosines = index.cosine(full, rows)
        if DENSE_SCORE_USES_SENTENCES:
            # A passage answers a question as well as its best sentence does:
            # a long passage should not look less relevant for being long.
            cosines = [max([c] + [float(v @ full) for _, _, v in index.sentences_of(row)])
                       for row, c in zip(rows, cosines)]
        return [Hit(chunk=index.chunks[row], score=float(score), rank=rank,
                    dense_score=cos, bm25_score=bm25_by_row.get(row))
                for rank, ((row, score), cos) in enumerate(zip(ranked, cosines), 1)]

    def _rerank(self, query: str, ranked: list[tuple[int, float]], top: int) -> list[tuple[int, float]]:
        """The first ``top`` of ``ranked`` reordered by the cross-encoder set in
        ``settings.reranker`` (scores are then the reranker's); the rest
        follow. Unchanged when the reranker cannot be used."""
        from .rerank import rerank

        head = ranked[:top]
        reordered = rerank(query, [r for r, _ in head], [self.index.chunks[r].text for r, _ in head],
                           self.settings.reranker, self.settings.device)
        return ranked if reordered is None else reordered + ranked[top:]

    def _lexical_in_pool(self, query: str, dense, lexical) -> list[tuple[int, float]]:
        """BM25 over the chunks of the documents the question is about (the
        :data:`POOL_DOCUMENTS` best documents by dense and by BM25 rank), each
        document scored with its own word statistics (:func:`local_bm25`).

        So a document's passages get the same BM25 scores, relative to each
        other, whatever else is in the index: unrelated documents can no
        longer reorder the article's passages. Measured with 3,756 unrelated
        chunks added (docs/evaluation.md), recall@1 moved from the seed-only
        figure by at most 0.031 on every question set, against 0.015-0.087
        with statistics pooled over the documents.
        """
        index = self.index
        docs = list(dict.fromkeys(index.chunks[r].doc_id for r, _ in dense))[:POOL_DOCUMENTS]
        docs += list(dict.fromkeys(index.chunks[r].doc_id for r, _ in lexical))[:POOL_DOCUMENTS]
        expanded = expand_lay_terms(query)
        scored, budget = [], POOL_MAX_CHUNKS
        for doc in dict.fromkeys(docs):
            rows = index.rows_of_document(doc)[:budget]
            budget -= len(rows)
            scored += local_bm25(expanded, rows, index)
            if budget <= 0:
                break
        return sorted(scored, key=lambda kv: -kv[1])

    def _dense(self, qvec, fetch: int, extra_rows: Sequence[int] = ()) -> list[tuple[int, float]]:
        """Chunks ranked by a mix of whole-chunk and best-sentence cosine:
        the ``fetch`` nearest by either, plus ``extra_rows``."""
        index = self.index
        whole = dict(index.dense_search(qvec, fetch))
        best_sentence = dict(index.sentence_search(qvec, fetch))
        rows = list(dict.fromkeys([*whole, *best_sentence, *extra_rows]))
        if not rows:
            return []
        chunk_cos = index.cosine(qvec, rows)
        if not best_sentence:
            return sorted(zip(rows, chunk_cos), key=lambda kv: -kv[1])
        sentence_cos = [best_sentence.get(r) for r in rows]
        for i, value in enumerate(sentence_cos):
            if value is None:  # its best sentence was not among the nearest: score it here
                sents = index.sentences_of(rows[i])
                sentence_cos[i] = max((float(v @ qvec) for _, _, v in sents), default=chunk_cos[i])
        mixed = [(row, SENTENCE_WEIGHT * sc + (1 - SENTENCE_WEIGHT) * cc)
                 for row, sc, cc in zip(rows, sentence_cos, chunk_cos)]
        return sorted(mixed, key=lambda kv: -kv[1])
